# Shared helpers for the bench scripts (sourced).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC2034 # BIN and WORK are for the scripts that source this file
BIN=${EW_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/edgewatch}
WORK=${BENCH_DIR:-$ROOT/target/bench}
mkdir -p "$WORK"

build() {
  [ -n "${EW_BIN:-}" ] || (cd "$ROOT" && cargo build --release --locked --quiet)
}

# video NAME ARGS...: a fixture video made once by tests/fixtures/make_video.sh
video() {
  local name=$1; shift
  local out="$WORK/$name.avi"
  [ -f "$out" ] || bash "$ROOT/tests/fixtures/make_video.sh" "$out" "$@" >&2
  echo "$out"
}

# init_model SIZE: the width-1.0 MobileNetV2 + BiLSTM bench model at SIZExSIZE, untrained, seed 7,
# made once by the model tooling and cached under $WORK/models (same arguments, same bytes). Needs
# the model venv (EW_MODEL_PYTHON, default /opt/edgewatch-model-venv/bin/python).
init_model() {
  local py=${EW_MODEL_PYTHON:-/opt/edgewatch-model-venv/bin/python}
  local out="$WORK/models/mbv2-w1.0-$1-seed7"
  local args=(init --width-mult 1.0 --size "$1" --window 16 --sample-fps 5 --hidden 32 --seed 7)
  if [ ! -f "$out/manifest.toml" ] || [ "$(cat "$out/.args" 2>/dev/null)" != "${args[*]}" ]; then
    rm -rf "$out"
    mkdir -p "$WORK/models"
    echo "making $out: python -m edgewatch_model ${args[*]}" >&2
    (cd "$ROOT/model" && "$py" -m edgewatch_model "${args[@]}" "$out" > "$out.log" 2>&1) \
      || { cat "$out.log" >&2; exit 1; }
    echo "${args[*]}" > "$out/.args"
  fi
  echo "$out"
}

# venv_ort_lib PY: the onnxruntime shared library in the Python venv of PY (resolved), or nothing.
venv_ort_lib() {
  local lib
  lib=$(compgen -G "$(dirname "$1")/../lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*" | head -1 || true)
  [ -z "$lib" ] || readlink -f "$lib"
}

# bench_model NAME: the shipped folder of a bench model: demo (model/demo), w1.0-112 or w1.0-224.
bench_model() {
  case $1 in
    demo) echo "$ROOT/model/demo" ;;
    w1.0-112|w1.0-224) init_model "${1#w1.0-}" ;;
    *) echo "unknown model $1 (w1.0-112, w1.0-224, demo)" >&2; exit 1 ;;
  esac
}

# every_frame_model SRC NAME FPS: a copy of model folder SRC under $WORK/models whose manifest
# samples at FPS (the video's rate), so every frame is inferred. The model files keep their
# sha256s (the manifest pins them); the manifest's own sha256 changes, which is fine unless
# `model.manifest-sha256` pins it (the bench configs do not).
every_frame_model() {
  local src=$1 out="$WORK/models/$2-every-frame-${3}fps"
  mkdir -p "$out"
  for f in backbone.onnx head.onnx; do
    cmp -s "$src/$f" "$out/$f" 2>/dev/null || cp "$src/$f" "$out/$f"
  done
  sed -E "s/^sample-fps = [^ #]+/sample-fps = ${3}.0/" "$src/manifest.toml" > "$out/manifest.toml.new"
  grep -q "^sample-fps = ${3}.0" "$out/manifest.toml.new" || { echo "cannot set sample-fps in $out" >&2; exit 1; }
  mv "$out/manifest.toml.new" "$out/manifest.toml"
  echo "$out"
}

# config FILE VIDEO PACE LOOP PORT SPOOL [MODEL_DIR (default: the demo model)]
config() {
  cat > "$1" <<CONF
node = "bench"
camera = "cam0"
[log]
format = "json"
[http]
listen = "127.0.0.1:$5"
[source]
kind = "file"
path = "$2"
pace = "$3"
loop = $4
[model]
source = "${7:-$ROOT/model/demo}"
[clip]
spool-dir = "$6"
min-free-space = "1 MB"
CONF
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

metric() { # metric PORT NAME -> value (first sample)
  python3 - "$1" "$2" <<'PY'
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith(sys.argv[2] + " ") or line.startswith(sys.argv[2] + "{"):
        print(line.rsplit(" ", 1)[1]); break
else:
    print("nan")
PY
}

# cpu_seconds PID: user+system CPU seconds of a live process
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
