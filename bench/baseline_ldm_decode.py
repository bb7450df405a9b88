#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Times the official LDM decoder (Stable Diffusion's KL-f8 architecture: ch 128, ch_mult
1,2,4,4, two blocks per level, 4 latent channels; random weights) on one latent, as JSON lines.

    /usr/bin/python3 bench/baseline_ldm_decode.py OFFICIAL_DIR [--size 256] [--repeats 3] [--threads N]

OFFICIAL_DIR holds a checkout of CompVis/latent-diffusion and the stand-ins that
tests/data/make_autoencoder_fixtures.py writes (run that once with the same OFFICIAL_DIR):

    git clone https://github.com/CompVis/latent-diffusion OFFICIAL_DIR/latent-diffusion
    git clone https://github.com/CompVis/taming-transformers OFFICIAL_DIR/taming-transformers
    /usr/bin/python3 tests/data/make_autoencoder_fixtures.py OFFICIAL_DIR

What is timed is what `decode_first_stage` runs for a KL model: post_quant_conv, then the
official Decoder, under torch.no_grad() in eval mode, float32 (the same work as
`tessera-cli bench decode --model sd-kl-f8`).
"""
import argparse
import contextlib
import json
import os
import resource
import sys
import time

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("official")
    parser.add_argument("--size", type=int, default=256, help="picture side in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    sys.path[:0] = [os.path.join(args.official, "stubs"), os.path.join(args.official, "latent-diffusion")]
    from ldm.modules.diffusionmodules.model import Decoder  # the official module, unmodified
    if args.threads:
        torch.set_num_threads(args.threads)
    ddconfig = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                    ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(sys.stderr):  # the official constructor prints
        decoder = Decoder(**ddconfig).eval()
    post_quant_conv = torch.nn.Conv2d(4, 4, 1).eval()
    z = torch.randn(1, 4, args.size // 8, args.size // 8, generator=torch.Generator().manual_seed(0))
    time_decode(lambda latent: decoder(post_quant_conv(latent)), z, args.repeats, args.size,
                "official LDM Decoder (SD KL-f8, random weights)")


def time_decode(decode, z, repeats, size, model):
    """Decodes a 4×4 corner once (warm-up, as the C++ side does), then z `repeats` times
    under torch.no_grad(), and prints the JSON line (also used by baseline_dcae_decode.py)."""
    times = []
    with torch.no_grad():
        decode(z[:, :, :4, :4])
        for _ in range(repeats):
            start = time.perf_counter()
            decode(z)
            times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"bench": "decode", "model": model, "width": size, "height": size, "seconds_min": times[0],
                      "seconds_median": times[len(times) // 2],
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "torch_threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
