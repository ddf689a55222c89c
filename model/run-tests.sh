#!/usr/bin/env bash
# Runs the model tooling's tests: makes (or reuses) a venv with the pinned
# requirements, then pytest. Works on a fresh Debian 12 machine (installs
# python3-venv with apt when `python3 -m venv` cannot work). Extra arguments go to
# pytest.
#
#   EDGEWATCH_MODEL_VENV  venv path (default /opt/edgewatch-model-venv, or
#                         model/.venv when /opt is not writable)
#
# The venv is reinstalled only when requirements.txt changes (its sha256 is
# kept in the venv). JAX's compilation cache lives in the venv too, so repeated
# runs skip most of the XLA compile time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${EDGEWATCH_MODEL_VENV:-/opt/edgewatch-model-venv}"
sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then sudo="sudo"; fi

if ! mkdir -p "$venv" 2>/dev/null || [ ! -w "$venv" ]; then
    venv="$here/.venv"
fi

want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
stamp="$venv/.requirements.sha256"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    if ! command -v python3 >/dev/null || ! python3 -m venv --help >/dev/null 2>&1; then
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq python3 python3-venv >/dev/null
    fi
    if ! python3 -m venv --clear "$venv" >/dev/null 2>&1; then
        # Debian's python3 needs python3-venv (ensurepip) for venvs with pip
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv --clear "$venv"
    fi
    echo "model/run-tests.sh: installing model/requirements.txt into $venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt"
    echo "$want" > "$stamp"
fi

export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$venv/jax-cache}"
cd "$here"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
