#!/usr/bin/env bash
# The adaptive sampling rate against model.cpu-budget (issue 23, item 5): `edgewatch detect` on the
# 640x480 15 fps demo video paced in real time (looped) for SECONDS, on the width-1.0 MobileNetV2 at
# 224 (`init --seed 7`, untrained) in a copy whose manifest declares `sample-fps-min = 1.0` (15/15:
# the controller may go down to one frame a second; declared here for the bench, not earned by
# training), one inference thread, motion gating off (the demo's figures never stop moving, and the
# rate, not the gate, is measured). One run per budget, one after the other:
#   64      no budget: the manifest's 5 fps throughout (the reference row)
#   0.25    the issue's budget
#   0.05    a budget this x86 machine's inference exceeds at 5 fps, so the rate has to come down
# For each: the inference thread's CPU (edgewatch_inference_cpu_seconds_total) over the last
# WINDOW seconds, in cores, against the budget; the whole process's CPU share; the rate held at the
# end and the rates it passed through (the "sampling rate changed" log lines); frames sampled.
# Usage: bench/adaptive-rate.sh [SECONDS (default 60)] [WINDOW (default 40: after the controller settled)]
#   BENCH_BUDGETS="64 0.25 0.05" (default)
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
SECS=${1:-60}
WINDOW=${2:-40}
BUDGETS=${BENCH_BUDGETS:-64 0.25 0.05}
build
VID="$ROOT/demo/demo.avi"
RUN=$(mktemp -d "$WORK/adaptive-rate.XXXX")
src=$(init_model 224)
MODEL="$RUN/model"
mkdir -p "$MODEL"
cp "$src/backbone.onnx" "$src/head.onnx" "$MODEL/"
sed -E 's/^(sample-fps = [^ #]+)/\1\nsample-fps-min = 1.0/' "$src/manifest.toml" > "$MODEL/manifest.toml"
grep -q '^sample-fps-min = 1.0' "$MODEL/manifest.toml" || { echo "cannot declare sample-fps-min in $MODEL" >&2; exit 1; }

inference_cpu() { metric "$1" edgewatch_inference_cpu_seconds_total; }
echo "adaptive rate: $(basename "$VID") 640x480 @ 15 fps paced in real time, looped, ${SECS} s per budget; w1.0-224 (init --seed 7) declaring sample-fps-min = 1.0; tract, 1 thread, gating off; $(nproc) cores $(uname -m)"
echo "  inference CPU: edgewatch_inference_cpu_seconds_total over the last ${WINDOW} s of each run (the controller settles first); process CPU: /proc over the whole run"
printf '  %-8s %-16s %-14s %-18s %-10s %-22s %s\n' budget "inference cores" "vs budget" "process CPU share" "rate held" "rates passed" "sampled/s"
for budget in $BUDGETS; do
  d="$RUN/budget-$budget"
  mkdir -p "$d"
  port=$(free_port)
  config "$d/edgewatch.toml" "$VID" realtime true "$port" "$d/spool" "$MODEL"
  sed -i "s|^\[model\]|[model]\nbackend = \"tract\"\ncpu-budget = $budget|" "$d/edgewatch.toml"
  printf '[decision]\nthreshold = 1.0\n[motion]\nenabled = false\n' >> "$d/edgewatch.toml"
  "$BIN" --config "$d/edgewatch.toml" detect > "$d/log.json" 2>&1 &
  pid=$!
  sleep $((SECS - WINDOW))
  c0=$(inference_cpu "$port"); i0=$(metric "$port" edgewatch_frames_inferred_total); t0=$(date +%s.%N)
  sleep "$WINDOW"
  c1=$(inference_cpu "$port"); i1=$(metric "$port" edgewatch_frames_inferred_total); t1=$(date +%s.%N)
  fps=$(metric "$port" edgewatch_sample_fps)
  pcpu=$(cpu_seconds "$pid")
  kill "$pid"; wait "$pid" || true
  start_cpu=$(grep -o '"startup_cpu_s":[0-9.]*' "$d/log.json" | head -1 | cut -d: -f2 || true)
  # No change at all is a valid outcome (grep finds nothing).
  rates=$({ grep -o '"message":"sampling rate changed"[^}]*' "$d/log.json" || true; } | { grep -o '"to":[0-9.]*' || true; } | cut -d: -f2 | awk '{ printf "%s%.3g", (NR > 1 ? " " : ""), $1 }')
  awk -v b="$budget" -v c0="$c0" -v c1="$c1" -v i0="$i0" -v i1="$i1" -v t0="$t0" -v t1="$t1" -v fps="$fps" \
      -v p="$pcpu" -v s="${start_cpu:-0}" -v secs="$SECS" -v rates="5${rates:+ -> ${rates// / -> }}" 'BEGIN {
    w = t1 - t0; cores = (c1 - c0) / w
    printf "  %-8s %-16.3f %-14s %-18s %-10s %-22s %.2f\n", b, cores, sprintf("%.2fx", cores / b),
      sprintf("%.1f %%", 100 * (p - s) / secs), fps " fps", rates, (i1 - i0) / w }'
done
echo "  (runs: $RUN)"
