#!/usr/bin/env bash
# Installs everything tinykws needs on a fresh Debian/Ubuntu machine: apt tools, then a project
# virtual environment (.venv) with the package. The system Python is never pip-installed into
# (PEP 668 "externally managed" systems refuse it).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
PY=${PYTHON:-python3}
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v arm-none-eabi-gcc >/dev/null || need+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc)
# PostgreSQL: the server the multi-machine sweep test starts (and a sweep database, docs/nas.md)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
# Debian/Ubuntu ship venv separately from the interpreter.
if [ ! -x .venv/bin/python ] && ! $PY -c "import ensurepip, venv" >/dev/null 2>&1; then
  need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${need[@]}" >/dev/null; }
fi
[ -x .venv/bin/python ] || $PY -m venv .venv
VPY=.venv/bin/python
# torch is pinned to the CPU build 2.13.0; install it first so nothing pulls a CUDA build.
$VPY -m pip install -q --upgrade pip >/dev/null
$VPY -m pip install -q "torch==2.13.0"
$VPY -m pip install -q -e ".[test]"
# CMSIS-DSP C sources for the device MFCC (tinykws.deploy.frontend builds from them; nothing of
# CMSIS-DSP is copied into tinykws): the `cmsisdsp` source distribution, unpacked into .cache/cmsisdsp.
CMSIS_DSP_VERSION=1.10.3
CMSIS_DSP_DIR=.cache/cmsisdsp/cmsisdsp-$CMSIS_DSP_VERSION
if [ ! -f "$CMSIS_DSP_DIR/Include/arm_math.h" ]; then
  mkdir -p .cache/cmsisdsp
  $VPY -m pip download -q "cmsisdsp==$CMSIS_DSP_VERSION" --no-binary cmsisdsp --no-deps -d .cache/cmsisdsp >/dev/null \
    && tar xzf ".cache/cmsisdsp/cmsisdsp-$CMSIS_DSP_VERSION.tar.gz" -C .cache/cmsisdsp \
    || { echo "install.sh: could not fetch the cmsisdsp $CMSIS_DSP_VERSION source distribution from PyPI into" \
              ".cache/cmsisdsp (the device MFCC needs its C sources; or set TINYKWS_CMSIS_DSP=DIR)" >&2; exit 1; }
fi
