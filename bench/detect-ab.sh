#!/usr/bin/env bash
# Two edgewatch binaries side by side: peak RSS and CPU of `edgewatch detect` (tract, one thread)
# in the every-frame mode of bench/detect-vs-python.sh (the demo video, all 360 frames inferred,
# whole-frame decode, no gating, no events), on the width-1.0 bench models at 112 and 224.
# Rounds alternate the order (A then B, then B then A) so drift cancels; figures are the median
# [min-max] over the rounds, and B/A is taken within each round. Made to A/B a change that a
# flag cannot switch (the allocator, issue 21); nothing here is specific to it.
# Usage: bench/detect-ab.sh BIN_A BIN_B [ROUNDS (default 3)]
#   BENCH_MODELS="w1.0-112 w1.0-224"   the models (w1.0-112, w1.0-224, demo)
#   BENCH_BACKEND=tract                  or onnxruntime (both binaries need the feature; the library
#                                        is the model venv's, as in detect-vs-python.sh)
source "$(dirname "$0")/lib.sh"
A=${1:?usage: bench/detect-ab.sh BIN_A BIN_B [ROUNDS]}; B=${2:?usage: bench/detect-ab.sh BIN_A BIN_B [ROUNDS]}
ROUNDS=${3:-3}
MODELS=${BENCH_MODELS:-w1.0-112 w1.0-224}
BACKEND=${BENCH_BACKEND:-tract}
PY=${EW_MODEL_PYTHON:-/opt/edgewatch-model-venv/bin/python}
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian: apt-get install time)" >&2; exit 1; }
VID="$ROOT/demo/demo.avi"
RUN=$(mktemp -d "$WORK/ab.XXXX")
if [ "$BACKEND" = onnxruntime ]; then
  ORT_LIB=$(venv_ort_lib "$PY")
  [ -n "$ORT_LIB" ] || { echo "no onnxruntime library in $PY's venv: run model/run-tests.sh once" >&2; exit 1; }
fi

run() { # run BIN MODEL_DIR OUT: one timed run; OUT gets "cpu_s rss_mib"
  local d; d=$(mktemp -d "$RUN/run.XXXX")
  config "$d/c.toml" "$VID" fast false "$(free_port)" "$d/spool" "$2"
  printf '[decision]\nthreshold = 1.0\n[motion]\nenabled = false\n' >> "$d/c.toml"
  if [ "$BACKEND" = onnxruntime ]; then
    sed -i "s|^\[model\]|[model]\ndecode = \"full\"\nbackend = \"onnxruntime\"\nonnxruntime-library = \"$ORT_LIB\"|" "$d/c.toml"
  else
    sed -i "s|^\[model\]|[model]\ndecode = \"full\"\nbackend = \"tract\"|" "$d/c.toml"
  fi
  /usr/bin/time -f "%U %S %M" -o "$d/time" "$1" --config "$d/c.toml" detect > "$d/log" 2>&1 \
    || { echo "$1 failed, see $d/log" >&2; tail -3 "$d/log" >&2; exit 1; }
  # CPU after start-up, as detect-vs-python.sh counts it (the 'model loaded' line's startup_cpu_s).
  local su; su=$(grep -o '"startup_cpu_s":[0-9.]*' "$d/log" | head -1 | cut -d: -f2)
  awk -v su="${su:-0}" '{ printf "%.3f %.1f\n", $1 + $2 - su, $3 / 1024 }' "$d/time" > "$3"
  rm -rf "$d"
}

echo "detect A/B: $(basename "$VID") (640x480 MJPEG, 15 fps, 360 frames, every frame inferred), $BACKEND, one thread, $ROUNDS rounds alternating"
echo "  A: $A"
echo "  B: $B"
for name in $MODELS; do
  m=$(every_frame_model "$(bench_model "$name")" "$name" 15)
  run "$A" "$m" /dev/null; run "$B" "$m" /dev/null # warm-up, untimed
  for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then order="A B"; else order="B A"; fi
    for w in $order; do
      if [ "$w" = A ]; then bin=$A; else bin=$B; fi
      run "$bin" "$m" "$RUN/$name.$w.$r"
    done
  done
  python3 - "$RUN" "$name" "$ROUNDS" <<'PY'
import statistics, sys
run, name, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
def read(w, r):
    cpu, rss = open(f"{run}/{name}.{w}.{r}").read().split()
    return float(cpu), float(rss)
a = [read("A", r) for r in range(1, rounds + 1)]
b = [read("B", r) for r in range(1, rounds + 1)]
def fig(xs, fmt):
    return f"{fmt % statistics.median(xs)} [{fmt % min(xs)}-{fmt % max(xs)}]"
for label, i, unit in (("CPU-s after start-up", 0, "%.2f"), ("peak RSS MiB", 1, "%.1f")):
    print(f"  {name:9} {label:21} A {fig([x[i] for x in a], unit):24} B {fig([x[i] for x in b], unit):24} "
          f"B/A {fig([y[i] / x[i] for x, y in zip(a, b)], '%.3f')}")
PY
done
echo "(runs: $RUN)"
