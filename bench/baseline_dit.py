#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The Python baseline for `tessera-cli bench sample`: the same DiT architecture (DiT's
models.py, written out here with PyTorch's own modules: Debian has no timm) and the same
DDIM sampler math with one batched forward for guidance, timed the same way, printing
the same JSON lines. What a user would otherwise run.

    /usr/bin/python3 bench/baseline_dit.py --preset DiT-S/2 --size 32 --channels 4 --steps 10 --cfg 4 --batches 1,8
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {"DiT-S": (384, 12, 6), "DiT-B": (768, 12, 12), "DiT-L": (1024, 24, 16), "DiT-XL": (1152, 28, 16)}


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def attn(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = (q * (C // self.heads) ** -0.5) @ k.transpose(-2, -1)
        x = (a.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)

    def forward(self, x, c):
        s1, g1, a1, s2, g2, a2 = self.ada(c).chunk(6, dim=1)
        x = x + a1.unsqueeze(1) * self.attn(modulate(self.norm1(x), s1, g1))
        return x + a2.unsqueeze(1) * self.fc2(F.gelu(self.fc1(modulate(self.norm2(x), s2, g2)), approximate="tanh"))


class DiT(nn.Module):
    def __init__(self, size, patch, channels, d, depth, heads, classes=1000):
        super().__init__()
        self.p, self.c, self.out = patch, channels, 2 * channels
        self.x_embedder = nn.Conv2d(channels, d, patch, patch)
        self.t_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.y_table = nn.Embedding(classes + 1, d)
        g = size // patch
        self.register_buffer("pos", self.pos_embed(d, g))
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(depth))
        self.norm_final = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(d, patch * patch * self.out)
        self.ada_final = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))

    @staticmethod
    def pos_embed(d, g):
        def one(dim, pos):
            omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
            out = pos.reshape(-1, 1).double() * omega
            return torch.cat([out.sin(), out.cos()], 1)
        rows, cols = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        return torch.cat([one(d // 2, cols), one(d // 2, rows)], 1).float().unsqueeze(0)

    def forward(self, x, t, y):
        N, _, H, W = x.shape
        h = self.x_embedder(x).flatten(2).transpose(1, 2) + self.pos
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        c = self.t_mlp(torch.cat([torch.cos(args), torch.sin(args)], -1)) + self.y_table(y)
        for b in self.blocks:
            h = b(h, c)
        shift, scale = self.ada_final(c).chunk(2, dim=1)
        h = self.linear(modulate(self.norm_final(h), shift, scale))
        gh, gw, p = H // self.p, W // self.p, self.p
        h = h.reshape(N, gh, gw, p, p, self.out)
        return torch.einsum("nhwpqc->nchpwq", h).reshape(N, self.out, H, W)

    def forward_with_cfg(self, x, t, y, scale):
        half = x[: len(x) // 2]
        out = self(torch.cat([half, half]), t, y)
        eps, rest = out[:, :3], out[:, 3:]
        c, u = eps.chunk(2)
        e = u + scale * (c - u)
        return torch.cat([torch.cat([e, e]), rest], 1)


def ddim(model, z, y, steps, cfg, alphas_cumprod):
    ts = list(range(0, 1000, 1000 // steps))[::-1]
    x = torch.cat([z, z]) if cfg != 1 else z
    labels = torch.cat([y, torch.full_like(y, 1000)]) if cfg != 1 else y
    for i, k in enumerate(ts):
        t = torch.full((x.shape[0],), k)
        out = model.forward_with_cfg(x, t, labels, cfg) if cfg != 1 else model(x, t, labels)
        eps = out[:, : z.shape[1]]
        a, a_prev = alphas_cumprod[k], (alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else 1.0)
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    return x[: z.shape[0]]


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="DiT-S/2")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--cfg", type=float, default=1.0)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    name, patch = args.preset.split("/")
    d, depth, heads = PRESETS[name]
    torch.manual_seed(0)
    model = DiT(args.size, int(patch), args.channels, d, depth, heads).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ac = torch.cumprod(1 - betas, 0).tolist()
    for batch in [int(b) for b in args.batches.split(",")]:
        z = torch.randn(batch, args.channels, args.size, args.size)
        y = torch.ones(batch, dtype=torch.long)
        with torch.inference_mode():
            ddim(model, z, y, args.steps, args.cfg, ac)
            open("/proc/self/clear_refs", "w").write("5")
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                ddim(model, z, y, args.steps, args.cfg, ac)
                times.append(time.perf_counter() - start)
        median = sorted(times)[len(times) // 2]
        print(json.dumps({"bench": "sample", "impl": "python", "model": args.preset, "size": "%dx%d" % (args.size, args.size),
                          "channels": args.channels, "sampler": "ddim", "steps": args.steps, "cfg": args.cfg, "batch": batch,
                          "nfe": args.steps, "seconds": median, "per_step_ms": 1000 * median / args.steps,
                          "images_per_s": batch / median, "best_per_step_ms": 1000 * min(times) / args.steps,
                          "best_images_per_s": batch / min(times), "peak_rss_mib": peak_rss_mib(),
                          "threads": torch.get_num_threads(), "libtorch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
