#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpus of every fuzz target into corpus/<target>/.

    /usr/bin/python3 tests/fuzz/make_seeds.py BUILD/app/tessera-cli

Small, valid inputs of each format, so that the fuzzer starts from files that reach deep
into the parser rather than from random bytes. Formats are written with the standard
library where it suffices (safetensors, IDX, PNG); torch.save archives need Debian's
python3-torch; the gallery, a generated PNG and the shipped models' descriptions come
from tessera-cli itself. The seeds are committed: the tests never run Python.
"""
import argparse
import collections
import gzip
import io
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))


def corpus(target):
    path = os.path.join(HERE, "corpus", target)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def write(folder, name, data):
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def safetensors_bytes(tensors, metadata=None):
    """tensors: name -> (dtype, shape, raw bytes), in the reference writer's layout."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def seeds_safetensors():
    out = corpus("safetensors")
    f32 = struct.pack("<6f", *[i / 4 - 1 for i in range(6)])
    write(out, "f32.safetensors", safetensors_bytes({"w": ("F32", [2, 3], f32)}))
    write(out, "mixed.safetensors", safetensors_bytes({
        "a": ("F16", [2], struct.pack("<2H", 0x3C00, 0xC000)),
        "b": ("BF16", [1, 2], struct.pack("<2H", 0x3F80, 0x4000)),
        "c": ("I64", [1], struct.pack("<q", -5)),
        "d": ("BOOL", [3], bytes([0, 1, 1])),
        "e": ("U8", [0], b""),
    }, {"format": "pt", "note": "seed"}))
    write(out, "scalar.safetensors", safetensors_bytes({"s": ("F64", [], struct.pack("<d", 2.5))}))
    write(out, "empty.safetensors", safetensors_bytes({}))


def seeds_torch(cli):
    import torch  # Debian's python3-torch
    ckpt, pkl = corpus("torch_checkpoint"), corpus("pickle")
    torch.manual_seed(0)
    base = torch.arange(12, dtype=torch.float32)
    cases = {
        "flat": collections.OrderedDict([("x_embedder.proj.weight", torch.randn(4, 2, 2, 2)), ("y", torch.zeros(3))]),
        "nested": {"model": {"w": torch.ones(2, 2)}, "ema": {"w": torch.ones(2, 2) * 2}, "epoch": 3, "lr": 1e-4,
                   "name": "run", "flags": [True, None, (1, 2.5)]},
        "views": {"a": base[2:6], "b": base.view(3, 4).t(), "c": base},
        "dtypes": {"h": torch.ones(2, dtype=torch.float16), "b": torch.ones(2, dtype=torch.bfloat16),
                   "l": torch.arange(3), "bool": torch.tensor([True, False]), "u8": torch.arange(4, dtype=torch.uint8)},
        "shared_lists": {"a": [[1, 2]] * 4, "b": {"k": [[1, 2]] * 4}},
    }
    for name, obj in cases.items():
        buf = io.BytesIO()
        torch.save(obj, buf)
        write(ckpt, name + ".pt", buf.getvalue())
    for name in ("state_dict.pt", "nested_checkpoint.pt", "malicious.pt"):
        shutil.copy(os.path.join(SOURCE, "tests", "data", name), ckpt)
    # data.pkl of archives whose one storage is record "0" of at most 256 bytes (what the
    # pickle target's archive holds), and pure-data pickles.
    for name, obj in {"one_storage": {"w": torch.arange(16, dtype=torch.float32)},
                      "view": {"v": torch.arange(16, dtype=torch.float32).view(4, 4)[1:3]},
                      "params": {"p": torch.nn.Parameter(torch.ones(8))}}.items():
        buf = io.BytesIO()
        torch.save(obj, buf)
        with zipfile.ZipFile(buf) as z:
            data = z.read([n for n in z.namelist() if n.endswith("data.pkl")][0])
        write(pkl, name + ".pkl", data)
    import pickle
    for protocol in (2, 4, 5):
        write(pkl, "data%d.pkl" % protocol,
              pickle.dumps({"epoch": 7, "names": ["a", "b"], "t": (1, 2.0, None, True), "b": b"\x00\x01",
                            "big": 2**70, "neg": -1}, protocol=protocol))
    write(pkl, "shared.pkl", pickle.dumps({"x": [[0] * 4] * 8}, protocol=2))


def seeds_idx():
    out = corpus("idx")
    images = bytes(range(18))
    raw = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">3I", 2, 3, 3) + images
    write(out, "u8.idx", raw)
    write(out, "u8.idx.gz", gzip.compress(raw, mtime=0))
    write(out, "labels.idx", struct.pack(">BBBB", 0, 0, 0x08, 1) + struct.pack(">I", 4) + bytes([0, 9, 3, 1]))
    write(out, "i32.idx", struct.pack(">BBBB", 0, 0, 0x0C, 2) + struct.pack(">2I", 2, 2) + struct.pack(">4i", -1, 2, 3, 4))
    write(out, "f64.idx", struct.pack(">BBBB", 0, 0, 0x0E, 1) + struct.pack(">I", 2) + struct.pack(">2d", 0.5, -2))


def seeds_image_header():
    out = corpus("image_header")
    write(out, "grey.png", png_bytes(4, 3, 1, {}))
    # A JPEG's first segments: SOI, an APP0 (JFIF) segment, a frame (SOF0) of 32 x 16, 3 components.
    jfif = b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 16, 32, 3) + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
    write(out, "frame.jpg", jfif + sof + b"\xff\xda\x00\x08")
    write(out, "progressive.jpg", b"\xff\xd8\xff\xff\xc2" + struct.pack(">HBHHB", 11, 8, 20000, 20000, 1) + b"\x01\x11\x00")


def png_bytes(width, height, channels, text):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    color = {1: 0, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + bytes((x * 37 + y * 11) % 256 for x in range(width * channels)) for y in range(height))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
    for key, value in text.items():
        out += chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode())
    return out + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def seeds_cli(cli):
    """A PNG and a gallery written by tessera-cli, and the shipped models' descriptions."""
    png, gallery, described = corpus("png"), corpus("gallery"), corpus("model_description")
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "g.db")
        subprocess.run([cli, "-q", "sample", "--model", "dit-fashion", "-n", "2", "--steps", "2", "--out",
                        os.path.join(tmp, "out"), "--gallery", db], check=True)
        made = sorted(f for f in os.listdir(os.path.join(tmp, "out")) if f.endswith(".png"))
        shutil.copy(os.path.join(tmp, "out", made[0]), os.path.join(png, "generated.png"))
        with sqlite3.connect(db) as c:  # one file, nothing in a write-ahead log
            c.execute("PRAGMA journal_mode=DELETE")
            c.execute("VACUUM")
        shutil.copy(db, os.path.join(gallery, "gallery.db"))
        empty = os.path.join(tmp, "empty.db")
        subprocess.run([cli, "-q", "sample", "--model", "dit-fashion", "-n", "1", "--steps", "1", "--out",
                        os.path.join(tmp, "o2"), "--gallery", empty], check=True)
        with sqlite3.connect(empty) as c:
            c.execute("PRAGMA journal_mode=DELETE")
            c.execute("DELETE FROM images")
        with sqlite3.connect(empty) as c:
            c.execute("VACUUM")
        shutil.copy(empty, os.path.join(gallery, "emptied.db"))
    write(png, "grey.png", png_bytes(4, 3, 1, {"tessera": json.dumps({"sampler": "ddim", "steps": 2})}))
    write(png, "rgba.png", png_bytes(2, 2, 4, {}))
    tiny = {
        "dit": {"input_size": 8, "patch_size": 2, "hidden_size": 32, "depth": 2, "num_heads": 4, "num_classes": 10},
        "sit": {"input_size": 8, "patch_size": 2, "hidden_size": 32, "depth": 2, "num_heads": 4, "num_classes": 10},
        "fit": {"input_size": 8, "patch_size": 2, "hidden_size": 32, "depth": 2, "num_heads": 2, "num_classes": 10,
                "qk_norm": True, "adaln": "lora", "adaln_rank": 8, "learn_sigma": False, "prediction": "velocity"},
        "nit": {"input_size": 8, "patch_size": 2, "in_channels": 4, "hidden_size": 32, "depth": 2, "num_heads": 2,
                "num_classes": 10},
    }
    models = os.path.join(SOURCE, "resources", "models")
    for name in sorted(os.listdir(models)):
        if not name.endswith(".safetensors") or name.startswith("fashion-evaluator"):
            continue
        with open(os.path.join(models, name), "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            description = json.loads(json.loads(f.read(n))["__metadata__"]["tessera.model"])
        stem = name[: -len(".safetensors")]
        write(described, stem + ".json", json.dumps(description).encode())
        kind = description["backbone"]["kind"]
        if kind in tiny:  # the same description on the tiny weights the target loads
            description["backbone"]["config"] = dict(tiny[kind])
            write(described, stem + "-tiny.json", json.dumps(description).encode())


def seeds_configs():
    out = corpus("training_config")
    models = os.path.join(SOURCE, "resources", "models")
    for name in sorted(os.listdir(models)):
        if name.endswith(".json"):
            shutil.copy(os.path.join(models, name), out)
    write(out, "folder.json", json.dumps({
        "model": {"backbone": "dit", "config": {"hidden_size": 32, "depth": 2, "num_heads": 2}},
        "data": {"source": "/nonexistent", "batch": 4, "size": [16, 16]},
        "train": {"steps": 10}}).encode())


def seeds_plugin():
    out = corpus("plugin_descriptor")
    import torch
    def descriptor(abi, size, cxx11, registration, strings):
        return struct.pack("<IIi", abi, size, cxx11) + bytes([registration]) + b"\x00".join(s.encode() for s in strings)
    version = torch.__version__.split("+")[0]
    write(out, "valid.bin", descriptor(2, 64, 1, 1, ["lms-sampler", "1.0", "Adams-Bashforth", version, "0.1.0"]))
    write(out, "old_abi.bin", descriptor(1, 56, 1, 1, ["old", "0.1", "", version, "0.0.1"]))
    write(out, "no_strings.bin", descriptor(2, 64, 0, 0, []))


def seeds_autoencoders(cli):
    """The names and shapes of the autoencoder fixtures (LDM's KL and VQ and DC-AE, both
    layouts each) and the descriptions tessera-cli writes when it imports them."""
    import torch  # Debian's python3-torch
    data = os.path.join(SOURCE, "tests", "data")
    shapes = corpus("autoencoder_import")
    for name in ("autoencoders/kl_compvis.pt", "autoencoders/vq_compvis.pt", "autoencoders/kl_diffusers.safetensors",
                 "dcae/sana_original.safetensors", "dcae/in_diffusers.safetensors"):
        path = os.path.join(data, name)
        name = os.path.basename(name)
        if name.endswith(".pt"):
            sd = torch.load(path, map_location="cpu")
            sd = sd.get("state_dict", sd)
            items = [(k, list(v.shape)) for k, v in sd.items()]
        else:
            with open(path, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(n))
            items = [(k, v["shape"]) for k, v in header.items() if k != "__metadata__"]
        lines = "".join(k + "".join(" %d" % d for d in shape) + "\n" for k, shape in items)
        write(shapes, name.split(".")[0] + ".txt", lines.encode())
    described = corpus("autoencoder_description")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("autoencoders/kl_diffusers.safetensors", "autoencoders/vq_compvis.pt", "dcae/in_original.safetensors"):
            out = os.path.join(tmp, "ae.safetensors")
            subprocess.run([cli, "-q", "import", "--from", "autoencoder", "--in", os.path.join(data, name), "--out", out],
                           check=True)
            with open(out, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(n))
            seed = {"dcae": "dc"}.get(os.path.dirname(name), os.path.basename(name).split("_")[0])
            write(described, seed + ".json", header["__metadata__"]["tessera.autoencoder"].encode())


def seeds_backbones():
    """The names and shapes of the U-Net fixtures (an LDM checkpoint, a bare UNetModel, an
    ADM one) and of a DiT one, for the backbone importers."""
    import torch  # Debian's python3-torch
    shapes = corpus("backbone_import")
    for folder, name in (("unet", "ldm_cin.ckpt"), ("unet", "ldm_attn.pt"), ("unet", "adm_cond.pt"),
                         ("dit", "dit_p2_sigma.pt")):
        sd = torch.load(os.path.join(SOURCE, "tests", "data", folder, name), map_location="cpu")
        sd = sd.get("state_dict", sd)
        lines = "".join(k + "".join(" %d" % d for d in v.shape) + "\n" for k, v in sd.items())
        write(shapes, name.split(".")[0] + ".txt", lines.encode())


def seeds_latent_cache():
    """Cache files as data.latents writes them (the fuzz target's tiny autoencoder: 4 items,
    4 latent channels of 4x4 cells), with a record that is not the target's, and damaged ones."""
    out = corpus("latent_cache")
    shape = [4, 4, 4, 4]
    zeros = struct.pack("<256f", *([0.0] * 256))
    tensors = {name: ("F32", shape, zeros) for name in ("mean", "std", "mean_flipped", "std_flipped")}
    record = {"autoencoder_sha256": "0" * 64, "data": {"fuzz": True}, "items": 4, "flips": True}
    good = safetensors_bytes(tensors, {"tessera.latents": json.dumps(record)})
    write(out, "other_autoencoder.safetensors", good)
    write(out, "no_record.safetensors", safetensors_bytes(tensors))
    write(out, "truncated.safetensors", good[: len(good) // 2])
    write(out, "empty.bin", b"")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cli", help="path of a built tessera-cli")
    args = parser.parse_args()
    seeds_safetensors()
    seeds_torch(args.cli)
    seeds_idx()
    seeds_image_header()
    seeds_cli(os.path.abspath(args.cli))
    seeds_configs()
    seeds_latent_cache()
    seeds_plugin()
    seeds_autoencoders(os.path.abspath(args.cli))
    seeds_backbones()


if __name__ == "__main__":
    main()
