#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The two commands of the README, both idempotent, on Debian 12:
#   ./tessera.sh run  [--screenshot FILE.png] [studio options]   install, build, open the studio
#   ./tessera.sh test [--slow | --all] [ctest options]             install, build, run the tests
#   ./tessera.sh test --fuzz [ctest options]   the fuzz targets under libFuzzer, ASan and UBSan (clang-14),
#                                              TESSERA_FUZZ_SECONDS each (default 20), in build-fuzz/
# Also: ./tessera.sh build | deps | cli ARGS...
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD_DIR="$ROOT/build"

# Exactly the Debian packages the project needs (build, run and test).
PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-pthread
  qt6-base-dev qt6-base-dev-tools libqt6opengl6-dev qt6-charts-dev libqt6sql6-sqlite libgl-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libexpected-dev zlib1g-dev libpng-dev libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libsqlite3-dev libsqlitecpp-dev libssl-dev libopencv-videoio-dev libgloo-dev
  libimgui-dev libgl1 xvfb xauth
  dataset-fashion-mnist fonts-dejavu-core
)

# What the fuzz preset adds (clang with libFuzzer and the sanitizer runtimes).
FUZZ_PACKAGES=(clang-14 libclang-rt-14-dev)

say() { printf 'tessera.sh: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else say "need root (or sudo) to run: $*"; exit 1
  fi
}

install_deps() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  # LibTorch finds BLAS through the libblas.so.3 alternative; the reference BLAS
  # is about 14x slower than OpenBLAS on matrix products.
  local blas
  blas=$(readlink -f /etc/alternatives/libblas.so.3-x86_64-linux-gnu 2>/dev/null || true)
  case "$blas" in
    *openblas*) ;;
    *) say "warning: the system BLAS is ${blas:-unknown}, not OpenBLAS (see: update-alternatives --config libblas.so.3-x86_64-linux-gnu)" ;;
  esac
}

# build [TARGET...]: configures once, then builds the targets (all of them when none named).
build() {
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    cmake --preset default -S "$ROOT"
  fi
  if [ $# -gt 0 ]; then
    cmake --build "$BUILD_DIR" --target "$@"
  else
    cmake --build "$BUILD_DIR"
  fi
}

# What the studio needs: the studio, the tessera-cli its training jobs run, the example plugins.
STUDIO_TARGETS=(tessera tessera-cli tessera_plugin_lms tessera_plugin_convnet)

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  deps)
    install_deps ;;
  build)
    install_deps; build ;;
  run)
    install_deps; build "${STUDIO_TARGETS[@]}"
    if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ]; then
      if printf '%s\n' "$@" | grep -q -- '^--screenshot'; then
        export QT_QPA_PLATFORM=offscreen   # a screenshot needs no screen
      else
        say "no display found (DISPLAY/WAYLAND_DISPLAY unset): start it from a desktop session, or use xvfb-run"
        exit 1
      fi
    fi
    exec "$BUILD_DIR/app/tessera" "$@" ;;
  cli)
    install_deps; build tessera-cli
    exec "$BUILD_DIR/app/tessera-cli" "$@" ;;
  test)
    if [ "${1:-}" = "--fuzz" ]; then
      shift
      install_deps "${FUZZ_PACKAGES[@]}"
      cmake --preset fuzz -S "$ROOT" -DTESSERA_FUZZ_SECONDS="${TESSERA_FUZZ_SECONDS:-20}" >/dev/null
      cmake --build "$ROOT/build-fuzz" --target tessera_fuzz
      cd "$ROOT/build-fuzz"
      exec ctest --output-on-failure -L '^fuzz$' "$@"
    fi
    install_deps; build
    labels='^(unit|integration|gui)$'
    case "${1:-}" in
      --slow) labels='^slow$'; shift ;;
      --all) labels='.'; shift ;;
    esac
    export QT_QPA_PLATFORM=offscreen
    cd "$BUILD_DIR"
    exec ctest --output-on-failure -L "$labels" "$@" ;;
  *)
    sed -n '3,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2 ;;
esac
