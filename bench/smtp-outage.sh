#!/usr/bin/env bash
# SMTP outage soak: `edgewatch detect` and `edgewatch watch` run as in a pod, the detector finding
# one event a minute on a looping fixture video in real time, while the SMTP server is down for
# SECONDS. Then the detector stops, the server (aiosmtpd) comes up, and the script waits for the
# spool to drain. Prints what the watchdog cost while it waited, how long the drain took, and
# whether every event was delivered exactly once (the issue: "a server that is down for an hour
# loses nothing").
# Usage: bench/smtp-outage.sh [SECONDS (default 3600)] [INTERVAL (default 60)]
# Needs scripts/deps.sh test (aiosmtpd in /opt/edgewatch-test-venv).
source "$(dirname "$0")/lib.sh"
SECS=${1:-3600}
EVERY=${2:-60}
PY=/opt/edgewatch-test-venv/bin/python
build
# 60 s loop: calm 50 s, burst 3 s, calm 7 s -> one event a minute with the brightness test model.
VID=$(video outage --size 640x480 --fps 15 --calm 50 --burst 3 --after 7)
RUN=$(mktemp -d "$WORK/outage.XXXX")
DPORT=$(free_port)
WPORT=$(free_port)
SPORT=$(free_port) # nothing listens here until the outage ends
config "$RUN/edgewatch.toml" "$VID" realtime true "$DPORT" "$RUN/spool" "$ROOT/model/test-brightness"
cat >> "$RUN/edgewatch.toml" <<CONF
[smtp]
host = "127.0.0.1"
port = $SPORT
tls = "none"
to = ["ops@example.com"]
[watch]
# Every event gets its own email here, so that "exactly once" can be counted per event.
min-gap = "0s"
max-per-hour = 100000
spool-min-free = "1 MiB"
CONF
sed "s/listen = \"127.0.0.1:$DPORT\"/listen = \"127.0.0.1:$WPORT\"/" "$RUN/edgewatch.toml" > "$RUN/watch.toml"
mkdir -p "$RUN/spool" "$RUN/mail"
"$BIN" --config "$RUN/edgewatch.toml" detect > "$RUN/detect.log" 2>&1 &
DPID=$!
"$BIN" --config "$RUN/watch.toml" watch > "$RUN/watch.log" 2>&1 &
WPID=$!
SPID=
trap 'kill $DPID $WPID $SPID 2>/dev/null || true' EXIT
sleep 5
start=$(date +%s)
c0=$(cpu_seconds "$WPID")
echo "# t_s watchdog_rss_kb watchdog_cpu_s pending_clips smtp_errors_network events" | tee "$RUN/series.txt"
pending() { find "$RUN/spool" -maxdepth 1 -name '*.json' | wc -l; }
smtp_net() { # the watchdog's network-class SMTP errors
  curl -s "127.0.0.1:$WPORT/metrics" | awk '/^edgewatch_smtp_errors_total\{class="network"\}/ { print $2; f=1 } END { if (!f) print 0 }'
}
while [ $(( $(date +%s) - start )) -lt "$SECS" ]; do
  sleep "$EVERY"
  if ! kill -0 "$DPID" || ! kill -0 "$WPID"; then echo "a process died; logs in $RUN" >&2; exit 1; fi
  t=$(( $(date +%s) - start ))
  echo "$t $(kb "$WPID" VmRSS) $(cpu_seconds "$WPID") $(pending) $(smtp_net) $(metric "$DPORT" edgewatch_events_total)" | tee -a "$RUN/series.txt"
done
c1=$(cpu_seconds "$WPID")
hwm=$(kb "$WPID" VmHWM)
# Stop the detector first (SIGTERM: it finishes a clip in progress), so the event count is final.
events=$(metric "$DPORT" edgewatch_events_total)
kill -TERM "$DPID"
wait "$DPID" || true
clips=$(pending)
errors=$(smtp_net)
"$PY" "$ROOT/tests/fixtures/smtp_server.py" --port "$SPORT" --maildir "$RUN/mail" > "$RUN/smtp.log" 2>&1 &
SPID=$!
up=$(date +%s)
while [ "$(pending)" -gt 0 ] && [ $(( $(date +%s) - up )) -lt 900 ]; do sleep 1; done
drain=$(( $(date +%s) - up ))
sleep 2
left=$(pending)
"$PY" - "$RUN/mail" "$SECS" "$clips" "$left" "$drain" "$c0" "$c1" "$hwm" "$errors" "$events" <<'PY'
import collections, email, glob, sys
mail, secs, clips, left, drain, c0, c1, hwm, errors, events = sys.argv[1:]
ids = collections.Counter()
for f in sorted(glob.glob(mail + "/*.eml")):
    with open(f, "rb") as fh:
        ids[email.message_from_binary_file(fh)["X-Edgewatch-Event"]] += 1
dup = sum(n - 1 for n in ids.values() if n > 1)
secs, clips, left, drain = int(secs), int(clips), int(left), int(drain)
cpu = float(c1) - float(c0)
print(f"smtp outage of {secs} s: {float(events):.0f} events detected, {clips} clips waiting when the server came up, "
      f"{sum(ids.values())} emails for {len(ids)} events received, {dup} duplicates, {left} clips left in the spool")
print(f"  watchdog while waiting: {cpu:.2f} CPU-s = {100 * cpu / secs:.3f} % of one core, peak RSS {int(hwm) / 1024:.1f} MB, "
      f"{float(errors):.0f} network errors (retries, capped backoff)")
print(f"  drain after the server came up: {drain} s (retry-max 300 s caps the wait)")
ok = left == 0 and dup == 0 and len(ids) == clips and clips > 0
print("  result:", "nothing lost, nothing duplicated" if ok else "FAILED")
sys.exit(0 if ok else 1)
PY
echo "  series: $RUN/series.txt"
