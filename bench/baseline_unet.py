#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The Python baseline for the U-Net's forward pass: the *official* UNetModel, built from an
official checkout, timed as `tessera-cli bench sample --steps 1` times one step, printing
JSON lines. ADM presets use guided-diffusion's own create_model with its README's flags;
LDM-cin256-v2 uses latent-diffusion's UNetModel with configs/latent-diffusion/cin256-v2.yaml's
unet_config and its ClassEmbedder's context (LDM imports einops and omegaconf, which Debian
lacks: the stand-ins tests/data/make_unet_fixtures.py writes are used, see its docstring).

    git clone https://github.com/openai/guided-diffusion OFFICIAL/guided-diffusion
    git clone https://github.com/CompVis/latent-diffusion OFFICIAL/latent-diffusion
    /usr/bin/python3 bench/baseline_unet.py --official OFFICIAL --preset ADM-64 --size 64 --batch 8
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))

ADM = {  # guided-diffusion README model flags (class-conditional ImageNet)
    "ADM-64": dict(image_size=64, num_channels=192, num_res_blocks=3, attention_resolutions="32,16,8",
                   num_head_channels=64, use_new_attention_order=True),
    "ADM-128": dict(image_size=128, num_channels=256, num_res_blocks=2, attention_resolutions="32,16,8", num_heads=4),
    "ADM-256": dict(image_size=256, num_channels=256, num_res_blocks=2, attention_resolutions="32,16,8",
                    num_head_channels=64),
    "ADM-512": dict(image_size=512, num_channels=256, num_res_blocks=2, attention_resolutions="32,16,8",
                    num_head_channels=64),
}


def official_model(official, preset):
    if preset in ADM:
        sys.path.insert(0, os.path.join(official, "guided-diffusion"))
        from guided_diffusion.script_util import create_model
        m = create_model(learn_sigma=True, class_cond=True, use_scale_shift_norm=True, resblock_updown=True,
                         **ADM[preset])
        return m, 3, lambda x, t, y: m(x, t, y=y)
    if preset == "LDM-cin256-v2":
        sys.path.insert(0, os.path.join(HERE, "..", "tests", "data"))
        import make_unet_fixtures  # writes OFFICIAL/stubs-unet (einops, omegaconf, … stand-ins)
        make_unet_fixtures.write_stubs(official)
        sys.path.insert(0, os.path.join(official, "stubs-unet"))
        sys.path.insert(0, os.path.join(official, "latent-diffusion"))
        from ldm.modules.diffusionmodules.openaimodel import UNetModel
        m = UNetModel(image_size=64, in_channels=3, out_channels=3, model_channels=192, attention_resolutions=[8, 4, 2],
                      num_res_blocks=2, channel_mult=[1, 2, 3, 5], num_heads=1, use_spatial_transformer=True,
                      transformer_depth=1, context_dim=512)
        embed = torch.nn.Embedding(1001, 512)  # the ClassEmbedder: c = embedding(y[:, None])
        return m, 3, lambda x, t, y: m(x, t, context=embed(y[:, None]))
    raise SystemExit("unknown preset %s (known: %s, LDM-cin256-v2)" % (preset, ", ".join(ADM)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, help="folder holding the official checkouts")
    ap.add_argument("--preset", default="ADM-64")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, channels, forward = official_model(args.official, args.preset)
    model.eval()
    x = torch.randn(args.batch, channels, args.size, args.size)
    t = torch.full((args.batch,), 500, dtype=torch.long)
    y = torch.randint(0, 1000, (args.batch,))
    seconds = []
    with torch.no_grad():
        forward(x, t, y)  # warm-up
        for _ in range(args.repeats):
            start = time.perf_counter()
            forward(x, t, y)
            seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    print(json.dumps({"bench": "forward", "impl": "python-official", "model": args.preset,
                      "size": "%dx%d" % (args.size, args.size), "batch": args.batch, "threads": torch.get_num_threads(),
                      "forward_ms": 1000 * median, "best_forward_ms": 1000 * min(seconds),
                      "images_per_s": args.batch / median, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
