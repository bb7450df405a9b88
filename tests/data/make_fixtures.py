#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the committed test fixtures. Run from this folder: /usr/bin/python3 make_fixtures.py (Debian python3-torch)

reference.safetensors is written with Python's standard library only (struct, json),
following the safetensors specification and the reference writer's layout: header
length as little-endian u64, compact JSON header with "__metadata__" first and the
tensors ordered by descending dtype rank then name, padded with spaces to 8 bytes.
The tensor values follow formulas the C++ tests recompute.

The .pt files need Debian's python3-torch (torch.save); they are committed, so the
tests never need Python.
"""
import collections
import json
import os
import struct

# Values are the formula (i * 7 + 3) mod m, cast/scaled per dtype (see test_safetensors.cpp).
DTYPES = [  # name, struct code, element count, value(i)
    ("F64", "d", 5, lambda i: (i * 7 + 3) % 11 / 4.0),
    ("F32", "f", 6, lambda i: (i * 7 + 3) % 11 / 4.0 - 1.0),
    ("I64", "q", 4, lambda i: ((i * 7 + 3) % 11) * 1000000000007 - 5),
    ("I32", "i", 3, lambda i: ((i * 7 + 3) % 11) * 100000 - 7),
    ("I16", "h", 4, lambda i: ((i * 7 + 3) % 11) * 1000 - 4000),
    ("I8", "b", 5, lambda i: ((i * 7 + 3) % 11) * 11 - 60),
    ("U8", "B", 7, lambda i: ((i * 7 + 3) % 11) * 23),
    ("BOOL", "?", 6, lambda i: (i * 7 + 3) % 11 % 2 == 1),
]
# F16 / BF16 as raw bit patterns of exactly representable values: 1.5 * k - 3 for k = 0..3
F16_BITS = [0xC200, 0xBE00, 0x0000, 0x3E00]   # -3, -1.5, 0, 1.5
BF16_BITS = [0xC040, 0xBFC0, 0x0000, 0x3FC0]  # -3, -1.5, 0, 1.5
RANK = {"BOOL": 0, "U8": 1, "I8": 2, "I16": 5, "F16": 7, "BF16": 8, "I32": 9, "F32": 11, "F64": 12, "I64": 13}


def write_reference(path):
    tensors = []  # (name, dtype, shape, bytes)
    for name, code, n, value in DTYPES:
        data = struct.pack("<%d%s" % (n, code), *[value(i) for i in range(n)])
        tensors.append(("t_" + name.lower(), name, [n], data))
    tensors.append(("t_f16", "F16", [2, 2], struct.pack("<4H", *F16_BITS)))
    tensors.append(("t_bf16", "BF16", [2, 2], struct.pack("<4H", *BF16_BITS)))
    tensors.append(("a_matrix", "F32", [2, 3], struct.pack("<6f", *[i * 0.5 for i in range(6)])))
    tensors.append(("scalar", "F32", [], struct.pack("<f", 2.5)))
    tensors.append(("empty", "F32", [0, 3], b""))
    tensors.sort(key=lambda t: (-RANK[t[1]], t[0]))
    header = collections.OrderedDict()
    header["__metadata__"] = collections.OrderedDict(
        [("format", "pt"), ("tessera.note", "caf\u00e9 \u2014 written by make_fixtures.py")])
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = collections.OrderedDict(
            [("dtype", dtype), ("shape", shape), ("data_offsets", [offset, offset + len(data)])])
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, data in tensors:
            f.write(data)


def write_torch_fixtures():
    import torch

    # A module's state dict (OrderedDict with _metadata), nested the way training
    # scripts save checkpoints: {"model": ..., "ema": ..., "opt": ..., "epoch": ...}.
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    with torch.no_grad():
        net[0].weight.copy_(torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8 - 0.5)
        net[0].bias.copy_(torch.tensor([0.25, -0.5, 1.0]))
    model = net.state_dict()
    ema = collections.OrderedDict((k, v * 2) for k, v in model.items())
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    extras = collections.OrderedDict([
        ("half", torch.tensor([1.5, -2.0, 0.25], dtype=torch.float16)),
        ("bf16", torch.tensor([1.5, -2.0, 0.25], dtype=torch.bfloat16)),
        ("long", torch.tensor([-3, 0, 1 << 40], dtype=torch.int64)),
        ("int", torch.tensor([[7, -8]], dtype=torch.int32)),
        ("mask", torch.tensor([True, False, True])),
        ("bytes", torch.tensor([0, 127, 255], dtype=torch.uint8)),
        ("double", torch.tensor([0.1, 0.2], dtype=torch.float64)),
        ("transposed", base.t()),          # non-contiguous view of a shared storage
        ("row", base[2]),                  # offset view of the same storage
        ("param", torch.nn.Parameter(torch.ones(2, 2) * 3)),
    ])
    ckpt = {"model": model, "ema": ema, "extras": extras, "epoch": 7, "lr": 1e-4, "name": "tiny",
            "betas": (0.9, 0.999), "steps": [10, 20], "flag": True, "nothing": None}
    torch.save(ckpt, "nested_checkpoint.pt")
    torch.save(model, "state_dict.pt")
    torch.save(model, "legacy_state_dict.pt", _use_new_zipfile_serialization=False)

    write_train_checkpoint(net)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo this must never run",))

    torch.save({"weight": torch.zeros(2), "payload": Evil()}, "malicious.pt")


def write_train_checkpoint(net):
    """What the official DiT and SiT train.py save every ckpt_every steps: the model, its EMA,
    the AdamW state and the argparse.Namespace of the command line."""
    import argparse
    import copy
    import torch

    ema = copy.deepcopy(net)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0)
    net(torch.ones(2, 4)).sum().backward()
    opt.step()
    args = argparse.Namespace(data_path="/data/imagenet/train", results_dir="results", model="DiT-XL/2",
                              image_size=256, num_classes=1000, epochs=1400, global_batch_size=256, global_seed=0,
                              vae="ema", num_workers=4, log_every=100, ckpt_every=50000)
    checkpoint = {"model": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "args": args}
    torch.save(checkpoint, "train_checkpoint.pt")


if __name__ == "__main__":
    write_reference("reference.safetensors")
    write_torch_fixtures()
    print("fixtures written")
