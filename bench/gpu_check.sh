#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# One-shot check on a lent GPU machine (PyTorch + CUDA inside, no Debian packages):
# builds core, models and tessera-cli against that PyTorch's LibTorch (TESSERA_GUI=OFF),
# then samples on CUDA and on the CPU from the same seeds and noise, reproduces the
# official sampler fixtures on CUDA, and times sampling. Header-only and small
# libraries that image lacks travel in .devdeps/usr (copied from Debian 12:
# nlohmann-json, tl-expected, CLI11, spdlog, fmt, libpng, zlib).
#
#   bench/gpu_check.sh --prepare     here: fills .devdeps/usr (add /.devdeps/ to .git/info/exclude)
#   bench/gpu_check.sh OUT_DIR       there, with .devdeps carried
set -uo pipefail
if [ "${1:-}" = --prepare ]; then
  d=$(cd "$(dirname "$0")/.." && pwd)/.devdeps/usr
  a=/usr/lib/x86_64-linux-gnu
  mkdir -p "$d/include" "$d/lib/x86_64-linux-gnu/cmake" "$d/share/cmake"
  cp -r /usr/include/{nlohmann,tl,CLI,spdlog,fmt} /usr/include/{png.h,pngconf.h,pnglibconf.h,zlib.h,zconf.h} "$d/include/"
  cp -a $a/libspdlog.so* $a/libfmt.so* $a/libpng16.so* "$d/lib/x86_64-linux-gnu/"
  cp -L $a/libz.so "$d/lib/x86_64-linux-gnu/libz.so"
  cp -r $a/cmake/spdlog $a/cmake/fmt "$d/lib/x86_64-linux-gnu/cmake/"
  cp -r /usr/share/cmake/{CLI11,nlohmann_json,tl-expected} "$d/share/cmake/"
  exit 0
fi
out=${1:-/tmp/gpu_check}
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1
root=$(cd "$(dirname "$0")/.." && pwd)
deps=$root/.devdeps/usr
lib=$deps/lib/x86_64-linux-gnu
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda)'
start=$(date +%s)
# PyTorch ships fmt 12 headers in its include folder, which Debian's spdlog 1.10 cannot
# use: our fmt 9 must come first, so it goes into the compiler command itself.
export CXX="$(command -v g++) -isystem $deps/include"
cmake -S "$root" -B "$root/build-cuda" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTESSERA_GUI=OFF \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps" -DPNG_PNG_INCLUDE_DIR="$deps/include" -DPNG_LIBRARY="$lib/libpng16.so" \
  -DZLIB_INCLUDE_DIR="$deps/include" -DZLIB_LIBRARY="$lib/libz.so" >"$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
cmake --build "$root/build-cuda" --target tessera-cli -j16 >"$out/build.log" 2>&1 || { grep -E 'error' -A5 "$out/build.log" | head -80; exit 1; }
echo "configure + build: $(( $(date +%s) - start )) s; warnings: $(grep -c 'warning:' "$out/build.log")"
grep 'warning:' "$out/build.log" | sort -u | head -20
export LD_LIBRARY_PATH=$lib:${LD_LIBRARY_PATH:-}
cli=$root/build-cuda/app/tessera-cli
$cli --version
$cli --json info --system | python3 -c 'import json,sys; d=json.load(sys.stdin); print({k: d[k] for k in d if k in ("device","torch","threads")})'
w=$(mktemp -d)
data=$root/tests/data
$cli -q import --from dit --in "$data/dit/dit_p2_sigma.pt" --out "$w/dit.safetensors" --heads 4 >/dev/null
$cli -q import --from sit --in "$data/dit/sit_p2_sigma.pt" --out "$w/sit.safetensors" --heads 4 >/dev/null
compare() {  # reference trajectory file, ours
  python3 - "$1" "$2" <<'PY'
import json, struct, sys, torch
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        dt = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}[v["dtype"]]; s, e = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=dt).reshape(v["shape"])
    return out
a, b = load(sys.argv[1])["x_t"], load(sys.argv[2])["x_t"]
print("   max relative difference over %d states: %.2e" % (len(a), max(float((x - y).norm() / x.norm()) for x, y in zip(a, b))))
PY
}
echo "== official fixtures on CUDA (the test requires 1e-4 on the CPU, 5e-4 for DDIM)"
F=$data/samplers
run() { $cli -q sample --device cuda --model "$w/$1.safetensors" --sampler "$2" --steps "$3" --cfg 4 --class "$4" -n 2 --noise "$F/$5.safetensors" $6 --trajectory "$w/t.safetensors" --out "$w/o" >/dev/null && echo "$5" && compare "$F/$5.safetensors" "$w/t.safetensors"; }
run dit ddim 10 1,7 dit_ddim10_cfg4 ""
run dit ddpm 10 1,7 dit_ddpm10_cfg4 "--step-noise $F/dit_ddpm10_cfg4.safetensors"
run sit euler 10 3,9 sit_euler10_cfg4 ""
run sit heun 10 3,9 sit_heun10_cfg4 ""
run sit sde-euler 7 3,9 sit_sde_euler7_cfg4 "--step-noise $F/sit_sde_euler7_cfg4.safetensors"
echo "== seeds on CUDA vs CPU (noise drawn on the CPU either way)"
for s in ddim sde-euler dopri5; do
  $cli -q sample --device cuda --model "$w/sit.safetensors" --sampler $s --steps 20 --cfg 2 -n 4 --seed 9 --trajectory "$w/gpu.safetensors" --out "$w/g" >/dev/null
  $cli -q sample --device cpu --model "$w/sit.safetensors" --sampler $s --steps 20 --cfg 2 -n 4 --seed 9 --trajectory "$w/cpu.safetensors" --out "$w/c" >/dev/null
  echo "$s"; compare "$w/cpu.safetensors" "$w/gpu.safetensors"
done
[ -n "${SKIP_BENCH:-}" ] && exit 0
echo "== bench sample on CUDA"
for p in DiT-S/2 DiT-XL/2; do
  $cli bench sample --device cuda --preset $p --steps 20 --cfg 4 --batches 1,8,32 --repeats 3
done
$cli --threads 16 bench sample --device cpu --preset DiT-S/2 --steps 5 --cfg 4 --batches 1,8 --repeats 2
rm -rf "$w"
