#!/usr/bin/env bash
# Soak: `edgewatch detect` on a looping file source as fast as it goes, events firing regularly.
# Samples RSS and open file descriptors every INTERVAL seconds, prints the series and the
# least-squares slope of each (a leak shows as a steady positive slope).
# Usage: bench/soak.sh [SECONDS (default 3600)] [INTERVAL (default 30)]
source "$(dirname "$0")/lib.sh"
SECS=${1:-3600}
EVERY=${2:-30}
build
# 20 s loop: calm 10 s, burst 3 s, calm 7 s -> one event per loop after the cooldown, with the
# brightness test model (model/test-brightness), whose response to this fixture is known.
VID=$(video soak --size 640x480 --fps 15 --calm 10 --burst 3 --after 7)
RUN=$(mktemp -d "$WORK/soak.XXXX")
PORT=$(free_port)
config "$RUN/edgewatch.toml" "$VID" fast true "$PORT" "$RUN/spool" "$ROOT/model/test-brightness"
"$BIN" --config "$RUN/edgewatch.toml" detect > "$RUN/log.json" &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
start=$(date +%s)
echo "# t_s rss_kb fds frames events clips_in_spool" | tee "$RUN/series.txt"
while [ $(( $(date +%s) - start )) -lt "$SECS" ] && kill -0 "$PID" 2>/dev/null; do
  sleep "$EVERY"
  t=$(( $(date +%s) - start ))
  # The watchdog is not part of this run: keep the spool small by removing archived-or-not clips
  # older than a minute, as the watchdog would after delivery.
  find "$RUN/spool" -maxdepth 1 -type f -mmin +1 -delete 2>/dev/null || true
  echo "$t $(kb "$PID" VmRSS) $(ls "/proc/$PID/fd" | wc -l) $(metric "$PORT" edgewatch_frames_captured_total) $(metric "$PORT" edgewatch_events_total) $(ls "$RUN/spool"/*.mp4 2>/dev/null | wc -l)" | tee -a "$RUN/series.txt"
done
kill "$PID" 2>/dev/null || true
wait "$PID" 2>/dev/null || true
# Slopes over the second half (after warm-up: allocator pools and caches settle first).
awk -v secs="$SECS" '
  !/^#/ && $1 >= secs / 2 { n++; sx += $1; sy += $2; sf += $3; sxx += $1 * $1; sxy += $1 * $2; sxf += $1 * $3 }
  !/^#/ { last = $0; if (!first) first = $0 }
  END {
    d = n * sxx - sx * sx
    split(first, a, " "); split(last, b, " ")
    printf "soak: %d s, %d frames (%.0f fps), %d events\n", b[1], b[4], b[4] / b[1], b[5]
    printf "  RSS: %.1f MB at first sample, %.1f MB at the end\n", a[2] / 1024, b[2] / 1024
    printf "  fds: %d at first sample, %d at the end\n", a[3], b[3]
    if (d > 0) {
      printf "  slope (second half, %d samples): RSS %+.3f MB/hour, fds %+.3f /hour\n", n, (n * sxy - sx * sy) / d * 3600 / 1024, (n * sxf - sx * sf) / d * 3600
    }
  }' "$RUN/series.txt"
echo "  series: $RUN/series.txt"
