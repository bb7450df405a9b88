#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Times `tessera-cli bench sample` against the Python baseline (bench/baseline_dit.py) in
# one invocation on this machine, and prints ratios twice: against the baseline as a
# user would run it (default environment and PyTorch's default threads), and against
# the baseline given our BLAS kernel, threads and OpenMP wait policy, which isolates our
# own engineering. Latency: batch 1 without guidance; throughput: batch 8 with CFG 4.
# Ratios use each side's fastest run (this machine's timings vary by ±25% from run to
# run with other load); the medians are in the JSON lines above them.
#
#   bench/compare_sample.sh [build/app/tessera-cli]     (STEPS=5 REPEATS=3 by default)
set -euo pipefail
cli=${1:-build/app/tessera-cli}
here=$(cd "$(dirname "$0")" && pwd)
steps=${STEPS:-5}
repeats=${REPEATS:-3}
threads=$(nproc)
kernel=$("$cli" --json info --system | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["blas"]["kernel"])')
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# name preset size channels
configs=("DiT-S/2 32x32x4|DiT-S/2|32|4" "shipped-size stand-in: DiT-S/2 28x28x1|DiT-S/2|28|1")
for c in "${configs[@]}"; do
  IFS='|' read -r label preset size ch <<<"$c"
  for mode in latency throughput; do
    if [ $mode = latency ]; then b=1; cfg=1; else b=8; cfg=4; fi
    common=(--steps "$steps" --cfg "$cfg" --batches "$b" --repeats "$repeats")
    "$cli" bench sample --preset "$preset" --size "${size}x${size}" --channels "$ch" "${common[@]}" |
      sed "s|^{|{\"label\":\"$label\",\"mode\":\"$mode\",\"env\":\"tessera\",|" >>"$out"
    env -u OPENBLAS_CORETYPE -u OMP_WAIT_POLICY /usr/bin/python3 "$here/baseline_dit.py" --preset "$preset" --size "$size" \
      --channels "$ch" "${common[@]}" | sed "s|^{|{\"label\": \"$label\", \"mode\": \"$mode\", \"env\": \"python-default\", |" >>"$out"
    OPENBLAS_CORETYPE=$kernel OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 "$here/baseline_dit.py" --preset "$preset" --size "$size" \
      --channels "$ch" "${common[@]}" --threads "$threads" |
      sed "s|^{|{\"label\": \"$label\", \"mode\": \"$mode\", \"env\": \"python-same-kernel\", |" >>"$out"
  done
done
cat "$out"
/usr/bin/python3 - "$out" "$kernel" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
get = lambda label, mode, env: next(r for r in rows if r["label"] == label and r["mode"] == mode and r["env"] == env)
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t")
print("\nmachine: %s, %s threads, our kernel %s" % (cpu, rows[0]["threads"], sys.argv[2]))
for label in dict.fromkeys(r["label"] for r in rows):
    for env in ("python-default", "python-same-kernel"):
        lat_t, lat_p = get(label, "latency", "tessera"), get(label, "latency", env)
        thr_t, thr_p = get(label, "throughput", "tessera"), get(label, "throughput", env)
        print(json.dumps({"bench": "compare_sample", "label": label, "against": env,
                          "latency_ratio": round(lat_p["best_per_step_ms"] / lat_t["best_per_step_ms"], 2),
                          "throughput_ratio": round(thr_t["best_images_per_s"] / thr_p["best_images_per_s"], 2),
                          "peak_rss_ratio": round(thr_t["peak_rss_mib"] / thr_p["peak_rss_mib"], 2),
                          "tessera_ms_per_step_b1": round(lat_t["best_per_step_ms"], 1), "python_ms_per_step_b1": round(lat_p["best_per_step_ms"], 1),
                          "tessera_img_s_b8_cfg": round(thr_t["best_images_per_s"], 3), "python_img_s_b8_cfg": round(thr_p["best_images_per_s"], 3)}))
PY
