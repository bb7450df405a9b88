#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Times the official DC-AE decoder (dc-ae-f32c32-sana-1.0's architecture, NiT's; random
weights) on one latent, as a JSON line.

    /usr/bin/python3 bench/baseline_dcae_decode.py OFFICIAL_DIR [--size 256] [--repeats 3] [--threads N]

OFFICIAL_DIR holds a checkout of mit-han-lab/efficientvit as tests/data/make_dcae_fixtures.py
uses it (its stand-ins are written the same way, by that script's own functions):

    git clone https://github.com/mit-han-lab/efficientvit OFFICIAL_DIR/efficientvit

What is timed is the official `DCAE.decode` (its Decoder) under torch.no_grad() in eval
mode, float32: the same work as `tessera-cli bench decode --model dc-f32c32`.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data"))
import make_dcae_fixtures as fixtures  # noqa: E402  (the stand-ins and the official loader)
from baseline_ldm_decode import time_decode  # noqa: E402  (the same timing and JSON line)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("official")
    parser.add_argument("--size", type=int, default=256, help="picture side in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    official = os.path.abspath(args.official)
    dc_ae, _, _ = fixtures.load_official(official, fixtures.write_stubs(official))
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, _ = fixtures.official_config(dc_ae, official, "dc-ae-f32c32-sana-1.0")
    torch.manual_seed(0)
    model = dc_ae.DCAE(cfg).eval()
    z = torch.randn(1, 32, args.size // 32, args.size // 32, generator=torch.Generator().manual_seed(0))
    time_decode(model.decode, z, args.repeats, args.size, "official DC-AE Decoder (f32c32 sana, random weights)")

if __name__ == "__main__":
    main()
