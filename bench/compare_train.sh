#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Times `tessera-cli bench train` against the Python baseline (bench/baseline_train.py:
# the same DiT, DDPM hybrid loss, AdamW, clipping and EMA) in one invocation on this
# machine, with the same thread count, and prints the ratio twice: against the baseline
# as a user runs it (default environment), and against the baseline given our BLAS kernel
# and OpenMP wait policy, which isolates the rest of our engineering.
#
#   bench/compare_train.sh [CONFIG] [build/app/tessera-cli]   (STEPS=10 WARMUP=2 by default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
config=${1:-$here/../resources/models/dit-fashion.json}
cli=${2:-build/app/tessera-cli}
steps=${STEPS:-10}
warmup=${WARMUP:-2}
threads=$(nproc)
kernel=$("$cli" --json info --system | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["blas"]["kernel"])')
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$cli" --threads "$threads" bench train --config "$config" --steps "$steps" --warmup "$warmup" |
  sed 's|^{|{"env":"tessera",|' >>"$out"
env -u OPENBLAS_CORETYPE -u OMP_WAIT_POLICY /usr/bin/python3 "$here/baseline_train.py" --config "$config" \
  --steps "$steps" --warmup "$warmup" --threads "$threads" | sed 's|^{|{"env": "python-default", |' >>"$out"
OPENBLAS_CORETYPE=$kernel OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 "$here/baseline_train.py" --config "$config" \
  --steps "$steps" --warmup "$warmup" --threads "$threads" | sed 's|^{|{"env": "python-same-kernel", |' >>"$out"
cat "$out"
/usr/bin/python3 - "$out" "$kernel" <<'PY'
import json, sys
rows = {r["env"]: r for r in map(json.loads, open(sys.argv[1]))}
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t")
print("\nmachine: %s, %s threads, our kernel %s" % (cpu, rows["tessera"]["threads"], sys.argv[2]))
for env in ("python-default", "python-same-kernel"):
    print(json.dumps({"bench": "compare_train", "against": env,
                      "throughput_ratio": round(rows["tessera"]["images_per_s"] / rows[env]["images_per_s"], 2),
                      "peak_rss_ratio": round(rows["tessera"]["peak_rss_mib"] / rows[env]["peak_rss_mib"], 2),
                      "tessera_images_per_s": round(rows["tessera"]["images_per_s"], 1),
                      "python_images_per_s": round(rows[env]["images_per_s"], 1),
                      "tessera_data_wait_fraction": rows["tessera"]["data_wait_fraction"]}))
PY
