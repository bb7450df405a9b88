#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Times Stable Diffusion's KL-f8 decoder (random weights) in Tessera (`bench decode --model
# sd-kl-f8`) against the official LDM Decoder in Python (bench/baseline_ldm_decode.py), in
# one invocation, on the same BLAS kernel, threads and OpenMP wait policy, and prints the
# ratio of the fastest runs; then Tessera's 1024x1024 tiled decode and its peak memory.
# MODEL=dc-f32c32 times DC-AE's sana f32c32 decoder against the official efficientvit one
# (bench/baseline_dcae_decode.py) instead, without the tiled decode.
#
#   bench/compare_decode.sh OFFICIAL_DIR [build/app/tessera-cli]   (SIZE=256 REPEATS=3 MODEL=sd-kl-f8)
# OFFICIAL_DIR: see bench/baseline_ldm_decode.py (or bench/baseline_dcae_decode.py).
set -euo pipefail
official=$1
cli=${2:-build/app/tessera-cli}
here=$(cd "$(dirname "$0")" && pwd)
size=${SIZE:-256}
repeats=${REPEATS:-3}
model=${MODEL:-sd-kl-f8}
case $model in
  sd-kl-f8) baseline=baseline_ldm_decode.py ;;
  dc-f32c32) baseline=baseline_dcae_decode.py ;;
  *) echo "MODEL: sd-kl-f8 or dc-f32c32" >&2; exit 2 ;;
esac
threads=$(nproc)
kernel=$("$cli" --json info --system | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["blas"]["kernel"])')
ours=$("$cli" --threads "$threads" bench decode --model "$model" --size "${size}x${size}" --repeats "$repeats")
theirs=$(OPENBLAS_CORETYPE=$kernel OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 "$here/$baseline" "$official" \
  --size "$size" --repeats "$repeats" --threads "$threads")
echo "$ours"
echo "$theirs"
if [ "$model" = sd-kl-f8 ]; then
  "$cli" --threads "$threads" bench decode --model sd-kl-f8 --size 1024x1024 --tile 64 --overlap 8 --repeats 1
fi
/usr/bin/python3 - "$ours" "$theirs" "$kernel" <<'PY'
import json, sys
ours, theirs, kernel = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(json.dumps({"compare": "decode", "size": ours["width"], "kernel": kernel,
                  "tessera_s": round(ours["seconds_min"], 3), "official_s": round(theirs["seconds_min"], 3),
                  "ratio": round(theirs["seconds_min"] / ours["seconds_min"], 2)}))
PY
