#!/usr/bin/env bash
# Peak RSS and CPU share of `edgewatch detect` on a 640x480, 15 fps file source paced in real time
# with the demo model (the published Python detector: 1.8-2.2 GB RSS, ~56 % of a Pi 4).
# Usage: bench/detect-footprint.sh [SECONDS]   (default 60: the bundled 24 s demo video, looped)
source "$(dirname "$0")/lib.sh"
SECS=${1:-60}
build
VID="$ROOT/demo/demo.avi"
RUN=$(mktemp -d "$WORK/footprint.XXXX")
PORT=$(free_port)
config "$RUN/edgewatch.toml" "$VID" realtime true "$PORT" "$RUN/spool"
"$BIN" --config "$RUN/edgewatch.toml" detect > "$RUN/log.json" &
PID=$!
( sleep "$SECS"; kill "$PID" 2>/dev/null ) &
start=$(date +%s.%N)
peak=0; cpu=0; frames=""; inferred=""; skipped=""
while kill -0 "$PID" 2>/dev/null; do
  hwm=$(kb "$PID" VmHWM 2>/dev/null || echo 0); [ -n "$hwm" ] && [ "$hwm" -gt "$peak" ] && peak=$hwm
  c=$(cpu_seconds "$PID" 2>/dev/null || echo "$cpu"); cpu=$c
  frames=$(metric "$PORT" edgewatch_frames_captured_total 2>/dev/null || echo "$frames")
  inferred=$(metric "$PORT" edgewatch_frames_inferred_total 2>/dev/null || echo "$inferred")
  skipped=$(metric "$PORT" edgewatch_frames_inference_skipped_total 2>/dev/null || echo "$skipped")
  sleep 0.5
done
wait "$PID" || true
wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
echo "detect footprint: $(basename "$VID") 640x480 @ 15 fps paced in real time, demo model, $(nproc) cores $(uname -m)"
awk -v p="$peak" -v c="$cpu" -v w="$wall" 'BEGIN {
  printf "  peak RSS (VmHWM):    %.1f MB   (target < 150 MB; published Python detector 1800-2200 MB)\n", p / 1024
  printf "  CPU:                 %.2f s over %.1f s wall = %.1f %% of one core\n", c, w, 100 * c / w }'
echo "  frames: captured ${frames:-?}, inferred ${inferred:-?}, inference-skipped ${skipped:-?}"
echo "  clips: $(ls "$RUN/spool"/*.mp4 2>/dev/null | wc -l) in $RUN/spool"
