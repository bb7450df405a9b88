#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Times Stable Diffusion's KL-f8 decoder (random weights) in Tessera (`bench decode --model
# sd-kl-f8`) against the official LDM Decoder in Python (bench/baseline_ldm_decode.py), in
# one invocation, on the same BLAS kernel, threads and OpenMP wait policy, and prints the
# ratio of the fastest runs; then Tessera's 1024x1024 tiled decode and its peak memory.
#
#   bench/compare_decode.sh OFFICIAL_DIR [build/app/tessera-cli]   (SIZE=256 REPEATS=3)
# OFFICIAL_DIR: see bench/baseline_ldm_decode.py.
set -euo pipefail
official=$1
cli=${2:-build/app/tessera-cli}
here=$(cd "$(dirname "$0")" && pwd)
size=${SIZE:-256}
repeats=${REPEATS:-3}
threads=$(nproc)
kernel=$("$cli" --json info --system | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["blas"]["kernel"])')
ours=$("$cli" --threads "$threads" bench decode --model sd-kl-f8 --size "${size}x${size}" --repeats "$repeats")
theirs=$(OPENBLAS_CORETYPE=$kernel OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 "$here/baseline_ldm_decode.py" "$official" \
  --size "$size" --repeats "$repeats" --threads "$threads")
tiled=$("$cli" --threads "$threads" bench decode --model sd-kl-f8 --size 1024x1024 --tile 64 --overlap 8 --repeats 1)
echo "$ours"
echo "$theirs"
echo "$tiled"
/usr/bin/python3 - "$ours" "$theirs" "$kernel" <<'PY'
import json, sys
ours, theirs, kernel = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(json.dumps({"compare": "decode", "size": ours["width"], "kernel": kernel,
                  "tessera_s": round(ours["seconds_min"], 3), "official_s": round(theirs["seconds_min"], 3),
                  "ratio": round(theirs["seconds_min"] / ours["seconds_min"], 2)}))
PY
