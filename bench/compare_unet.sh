#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Times the U-Net's forward pass at batch 8 (`tessera-cli bench sample --steps 1`: one DDIM
# step, one network evaluation) against the official UNetModel in Python
# (bench/baseline_unet.py) on the same OpenBLAS kernel, threads and OpenMP wait policy, in
# one invocation, and prints the ratio per preset. OFFICIAL holds the official checkouts:
#
#   git clone https://github.com/openai/guided-diffusion $OFFICIAL/guided-diffusion
#   git clone https://github.com/CompVis/latent-diffusion $OFFICIAL/latent-diffusion
#   OFFICIAL=/path bench/compare_unet.sh [build/app/tessera-cli]   (PRESETS, REPEATS=3)
set -euo pipefail
cli=${1:-build/app/tessera-cli}
here=$(cd "$(dirname "$0")" && pwd)
official=${OFFICIAL:?set OFFICIAL to the folder holding the official checkouts}
repeats=${REPEATS:-3}
presets=${PRESETS:-"ADM-64:64:3 LDM-cin256-v2:64:3"}
threads=$(nproc)
kernel=$("$cli" --json info --system | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["blas"]["kernel"])')
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for p in $presets; do
  IFS=: read -r preset size ch <<<"$p"
  "$cli" --threads "$threads" bench sample --preset "$preset" --size "${size}x${size}" --channels "$ch" --steps 1 \
    --cfg 1 --batches 8 --repeats "$repeats" | sed "s|^{|{\"preset\":\"$preset\",\"env\":\"tessera\",|" >>"$out"
  OPENBLAS_CORETYPE=$kernel OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 "$here/baseline_unet.py" --official "$official" \
    --preset "$preset" --size "$size" --batch 8 --repeats "$repeats" --threads "$threads" |
    sed "s|^{|{\"preset\": \"$preset\", \"env\": \"python-same-kernel\", |" >>"$out"
done
cat "$out"
/usr/bin/python3 - "$out" "$kernel" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t")
print("# %s, OpenBLAS kernel %s" % (cpu, sys.argv[2]))
for preset in dict.fromkeys(r["preset"] for r in rows):
    ours = next(r for r in rows if r["preset"] == preset and r["env"] == "tessera")
    ref = next(r for r in rows if r["preset"] == preset and r["env"] == "python-same-kernel")
    ms = ours["per_step_ms"]
    print("%-14s batch 8 forward: official %.0f ms, Tessera %.0f ms, ratio %.2fx (medians)"
          % (preset, ref["forward_ms"], ms, ref["forward_ms"] / ms))
PY
