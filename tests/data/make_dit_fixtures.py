#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes dit/*.pt (tiny DiT/SiT state dicts saved by torch.save) and dit/*_io.safetensors
(inputs and the outputs of the *official* forward passes) for test_dit_reference.

    /usr/bin/python3 make_dit_fixtures.py OFFICIAL_DIR

OFFICIAL_DIR holds the reference `dit_models.py` (facebookresearch/DiT models.py, commit
ed81ce2) and `sit_models.py` (willisma/SiT models.py, commit 947f95b), plus a stand-in
for the three timm layers they import (PatchEmbed, Attention, Mlp; timm is not
packaged for Debian 12). None of that is committed: only its outputs are.

Non-square grids: the official code supports square grids only (its pos_embed is sized
for one grid and unpatchify assumes h == w). For those cases the official module is
used unchanged except for two substitutions that apply the official formulas to an
h x w grid: pos_embed is get_1d_sincos_pos_embed_from_grid of the column and row
indices (columns first, as the official meshgrid does), and unpatchify reshapes to
(N, h, w, p, p, C).
"""
import sys

import numpy as np
import torch

from make_fixtures import RANK  # the stdlib safetensors writer's dtype order
import collections
import json
import struct

STRUCT = {torch.float32: ("F32", "f"), torch.int64: ("I64", "q")}


def read_safetensors(path):
    """The tensors of a safetensors file written by write_safetensors (F32 and I64), metadata left out."""
    codes = {"F32": ("f", torch.float32), "I64": ("q", torch.int64)}
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n].decode())
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        code, dtype = codes[info["dtype"]]
        begin, end = info["data_offsets"]
        count = (end - begin) // struct.calcsize(code)
        values = struct.unpack("<%d%s" % (count, code), data[8 + n + begin:8 + n + end])
        out[name] = torch.tensor(values, dtype=dtype).reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    items = []
    for name, t in tensors.items():
        dtype, code = STRUCT[t.dtype]
        flat = t.contiguous().reshape(-1).tolist()
        items.append((name, dtype, list(t.shape), struct.pack("<%d%s" % (len(flat), code), *flat)))
    items.sort(key=lambda i: (-RANK[i[1]], i[0]))
    header, offset = collections.OrderedDict(), 0
    for name, dtype, shape, data in items:
        header[name] = collections.OrderedDict([("dtype", dtype), ("shape", shape), ("data_offsets", [offset, offset + len(data)])])
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(i[3] for i in items))


def grid_pos_embed(module_lib, dim, h, w):
    cols = np.tile(np.arange(w, dtype=np.float32), h)
    rows = np.repeat(np.arange(h, dtype=np.float32), w)
    emb = np.concatenate([module_lib.get_1d_sincos_pos_embed_from_grid(dim // 2, cols),
                          module_lib.get_1d_sincos_pos_embed_from_grid(dim // 2, rows)], axis=1)
    return torch.from_numpy(emb).float().unsqueeze(0)


def run_official(lib, model, x, t, y, cfg):
    p = model.patch_size
    h, w = x.shape[2] // p, x.shape[3] // p
    square_stored = model.pos_embed.shape[1] == h * w and h == w
    if not square_stored:  # the two substitutions described above
        stored = model.pos_embed.data.clone()
        model.pos_embed.data = grid_pos_embed(lib, model.pos_embed.shape[-1], h, w)
        c = model.out_channels

        def unpatchify(tokens):
            z = tokens.reshape(tokens.shape[0], h, w, p, p, c)
            z = torch.einsum("nhwpqc->nchpwq", z)
            return z.reshape(z.shape[0], c, h * p, w * p)
        model.unpatchify = unpatchify
    with torch.no_grad():
        out = model(x, t, y)
        out_cfg = model.forward_with_cfg(x, t, y, cfg)
    if not square_stored:
        model.pos_embed.data = stored
        del model.unpatchify
    return out, out_cfg


def case(lib, family, name, patch, learn_sigma, sizes, seed, t_kind):
    torch.manual_seed(seed)
    cls = getattr(lib, family)
    model = cls(input_size=8, patch_size=patch, in_channels=4, hidden_size=32, depth=2, num_heads=4,
                num_classes=10, learn_sigma=learn_sigma).eval()
    with torch.no_grad():  # the official init zeroes the output: randomise every trained weight
        for pname, prm in model.named_parameters():
            if pname != "pos_embed":
                prm.copy_(torch.randn_like(prm) * (0.3 if prm.dim() > 1 else 0.1))
    torch.save(model.state_dict(), "dit/%s.pt" % name)
    tensors = {}
    for i, (H, W) in enumerate(sizes):
        n = 4
        x = torch.randn(n, 4, H, W)
        t = torch.tensor([999, 500, 3, 0]) if t_kind == "int" else torch.tensor([0.0, 0.25, 0.7, 1.0])
        y = torch.tensor([1, 7, 10, 10])  # second half: the null class (for forward_with_cfg)
        out, out_cfg = run_official(lib, model, x, t, y, 4.0)
        for k, v in {"x": x, "t": t, "y": y, "output": out, "output_cfg": out_cfg}.items():
            tensors["%d.%s" % (i, k)] = v if v.dtype != torch.float64 else v.float()
    # t as float for SiT: safetensors writer handles F32
    write_safetensors("dit/%s_io.safetensors" % name, tensors)


def main():
    sys.path.insert(0, sys.argv[1])
    import dit_models
    import sit_models
    case(dit_models, "DiT", "dit_p2_sigma", 2, True, [(8, 8), (8, 12), (12, 6)], 1, "int")
    case(dit_models, "DiT", "dit_p4_nosigma", 4, False, [(8, 8), (8, 16)], 2, "int")
    case(sit_models, "SiT", "sit_p2_sigma", 2, True, [(8, 8), (10, 6)], 3, "float")
    case(sit_models, "SiT", "sit_p4_nosigma", 4, False, [(8, 8), (16, 8)], 4, "float")
    print("dit fixtures written")


if __name__ == "__main__":
    main()
