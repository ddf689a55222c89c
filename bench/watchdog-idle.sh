#!/usr/bin/env bash
# Idle cost of `edgewatch watch`: CPU seconds and RSS over 60 s with an empty spool watched by
# inotify (target: under 0.1 % of one core, under 20 MB RSS).
# Usage: bench/watchdog-idle.sh [SECONDS]
source "$(dirname "$0")/lib.sh"
SECS=${1:-60}
build
RUN=$(mktemp -d "$WORK/idle.XXXX")
cat > "$RUN/edgewatch.toml" <<CONF
[http]
listen = "127.0.0.1:0"
[clip]
spool-dir = "$RUN/spool"
[smtp]
outbox-dir = "$RUN/outbox"
[watch]
spool-min-free = "1 MiB"
CONF
mkdir -p "$RUN/spool"
"$BIN" --config "$RUN/edgewatch.toml" watch > "$RUN/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 2 # start-up is not idle
c0=$(cpu_seconds "$PID")
sleep "$SECS"
c1=$(cpu_seconds "$PID")
rss=$(kb "$PID" VmRSS)
hwm=$(kb "$PID" VmHWM)
awk -v a="$c0" -v b="$c1" -v s="$SECS" -v r="$rss" -v h="$hwm" 'BEGIN {
  printf "watchdog idle over %d s: CPU %.3f s = %.4f %% of one core (target < 0.1 %%)\n", s, b - a, 100 * (b - a) / s
  printf "  RSS %.1f MB (peak %.1f MB) (target < 20 MB)\n", r / 1024, h / 1024 }'
