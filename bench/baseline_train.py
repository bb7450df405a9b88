#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The Python baseline for `tessera-cli bench train`: the same DiT (baseline_dit.py), the
same DDPM loss (DiT's gaussian_diffusion.py: MSE on eps plus the variational bound with the
mean detached, for a learned-range variance), AdamW, gradient clipping and an EMA, on
Fashion-MNIST batches, timed per step and printed as the same JSON line.

    /usr/bin/python3 bench/baseline_train.py --config resources/models/dit-fashion.json --steps 20 --warmup 3 --threads 2
"""
import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from baseline_dit import DiT, peak_rss_mib  # noqa: E402


def load_images(path="/usr/share/datasets/fashion-mnist"):
    with gzip.open(os.path.join(path, "train-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(path, "train-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))


def normal_kl(m1, lv1, m2, lv2):
    return 0.5 * (-1.0 + lv2 - lv1 + torch.exp(lv1 - lv2) + (m1 - m2) ** 2 * torch.exp(-lv2))


def approx_std_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    centered = x - means
    inv = torch.exp(-log_scales)
    cdf_plus = approx_std_normal_cdf(inv * (centered + 1.0 / 255.0))
    cdf_min = approx_std_normal_cdf(inv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


class Diffusion:
    def __init__(self, steps=1000):
        betas = np.linspace(1e-4 * 1000 / steps, 0.02 * 1000 / steps, steps, dtype=np.float64)
        ac = np.cumprod(1.0 - betas)
        acp = np.append(1.0, ac[:-1])
        self.T = steps
        self.sqrt_ac = ac ** 0.5
        self.sqrt_1mac = (1 - ac) ** 0.5
        self.sqrt_recip_ac = (1 / ac) ** 0.5
        self.sqrt_recipm1_ac = (1 / ac - 1) ** 0.5
        pv = betas * (1 - acp) / (1 - ac)
        self.post_logvar = np.log(np.append(pv[1], pv[1:]))
        self.c1 = betas * acp ** 0.5 / (1 - ac)
        self.c2 = (1 - acp) * (1 - betas) ** 0.5 / (1 - ac)
        self.log_betas = np.log(betas)

    @staticmethod
    def at(a, t, x):
        return torch.from_numpy(a).to(x.device)[t].float().view(-1, *([1] * (x.dim() - 1)))

    def loss(self, model, x0, t, y, noise):
        xt = self.at(self.sqrt_ac, t, x0) * x0 + self.at(self.sqrt_1mac, t, x0) * noise
        out = model(xt, t, y)
        C = x0.shape[1]
        eps, v = out[:, :C], out[:, C:]
        mse = ((noise - eps) ** 2).mean(dim=(1, 2, 3))
        frozen_eps = eps.detach()
        min_log = self.at(self.post_logvar, t, x0)
        max_log = self.at(self.log_betas, t, x0)
        frac = (v + 1) / 2
        model_logvar = frac * max_log + (1 - frac) * min_log
        pred_x0 = self.at(self.sqrt_recip_ac, t, xt) * xt - self.at(self.sqrt_recipm1_ac, t, xt) * frozen_eps
        model_mean = self.at(self.c1, t, x0) * pred_x0 + self.at(self.c2, t, x0) * xt
        true_mean = self.at(self.c1, t, x0) * x0 + self.at(self.c2, t, x0) * xt
        true_logvar = self.at(self.post_logvar, t, x0)
        kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar).mean(dim=(1, 2, 3)) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar).mean(dim=(1, 2, 3)) / math.log(2.0)
        vb = torch.where(t == 0, nll, kl)
        return (mse + vb).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = json.load(open(args.config))
    mc = cfg["model"]["config"]
    tc = cfg.get("train", {})
    batch = cfg.get("data", {}).get("batch", 64)
    size = cfg.get("data", {}).get("size", [28, 28])[0]
    torch.manual_seed(0)
    model = DiT(size, mc["patch_size"], 1, mc["hidden_size"], mc["depth"], mc["num_heads"], classes=10)
    ema = DiT(size, mc["patch_size"], 1, mc["hidden_size"], mc["depth"], mc["num_heads"], classes=10)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.get("lr", 1e-4), weight_decay=tc.get("weight_decay", 0.0))
    diffusion = Diffusion(cfg["model"]["process"].get("steps", 1000))
    images, labels = load_images()
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        idx = torch.randint(0, len(images), (batch,), generator=g)
        x0 = images[idx].float() / 127.5 - 1.0
        y = labels[idx]
        y = torch.where(torch.rand(batch, generator=g) < tc.get("label_dropout", 0.1), torch.full_like(y, 10), y)
        t = torch.randint(0, diffusion.T, (batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        loss = diffusion.loss(model, x0, t, y, noise)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.get("clip", 1.0))
        opt.step()
        with torch.no_grad():
            d = tc.get("ema", 0.9999)
            for pe, p in zip(ema.parameters(), model.parameters()):
                pe.mul_(d).add_(p, alpha=1 - d)
        loss.item()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    seconds = sum(times)
    print(json.dumps({"bench": "train", "impl": "python", "config": args.config, "batch": batch, "steps": len(times),
                      "seconds": seconds, "steps_per_s": len(times) / seconds,
                      "images_per_s": len(times) * batch / seconds, "peak_rss_mib": peak_rss_mib(),
                      "threads": torch.get_num_threads(), "libtorch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
