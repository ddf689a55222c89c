#!/usr/bin/env bash
# Bytes on the wire per camera node per minute for three ways of getting its
# metrics to the monitoring host, side by side in one run, measured on
# loopback through a counting TCP proxy (bench/count-proxy.py):
#   (a) plain: a central Prometheus scrapes node exporter (default
#       collectors), the detector and the watchdog every 15 s;
#   (b) published: the same, plus sample_limit: 2000 and a
#       metric_relabel_configs keep rule (our keep-lists) on each job;
#   (c) ours: on the node, a Prometheus agent scrapes node exporter filtered
#       at the source, the detector and the watchdog with the keep-lists, and
#       remote-writes without metadata to the central receiver
#       (nix/lib/monitoring, as rendered for the nodes).
# One detector, one watchdog (delivering the detector's clips to an outbox)
# and one Pi 4 sysfs fixture serve all three. All three scrape
# every 15 s. Prints bytes/min for each, the ratios, and the series each
# central stores. Needs what .ci/observability-checks.sh installs.
#   bench/metrics-bandwidth.sh [SECONDS]     (default 300 measured, after 90 s warm-up)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-300}
WARMUP=${WARMUP:-90}
INTERVAL=15s
tools=${EW_CI_TOOLS:-/opt/edgewatch-ci}
t=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${EW_BIN:-}
for b in "$t/release/edgewatch" "$t/debug/edgewatch"; do [ -n "$BIN" ] || { [ -x "$b" ] && BIN=$b; }; done
[ -n "$BIN" ] || {
  (cd "$ROOT" && cargo build --release --locked --quiet --bin edgewatch)
  BIN=$t/release/edgewatch
}

work=$(mktemp -d -t edgewatch-bw.XXXXXX)
touch "$work/pids"
cleanup() {
  local pid _
  for pid in $(tac "$work/pids"); do
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
bg() { "$@" >>"$work/$(basename "$1").log" 2>&1 & echo $! >>"$work/pids"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nixjson() { nix-instantiate --eval --strict --json -E "let mon = (import $ROOT/nix/lib).monitoring; in $1"; }
nixlines() { nixjson "$1" | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)))'; }
wait_http() { local _; for _ in $(seq 1 120); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.5; done; echo "no answer from $1" >&2; return 1; }

P_NE_DEFAULT=$(port) P_NE_OURS=$(port) P_DET=$(port) P_WD=$(port) P_AGENT=$(port)
P_A=$(port) P_B=$(port) P_C=$(port)
PX_A_NE=$(port) PX_A_DET=$(port) PX_A_WD=$(port) PX_B_NE=$(port) PX_B_DET=$(port) PX_B_WD=$(port) PX_C_RW=$(port)

# Node side: a Pi 4 sysfs fixture, the throttling flags, two node exporters
# (default collectors for a and b, ours for c), one detector.
"$tools/obs/bin/python" "$ROOT/.ci/observability/obs.py" pi-sysfs "$work/sysfs" >/dev/null
mkdir -p "$work/textfile" "$work/spool"
SYSFS="$work/sysfs" VCGENCMD=/nonexistent bash "$ROOT/nixos/hardware/pi-throttled.sh" "$work/textfile"
bg prometheus-node-exporter --path.sysfs="$work/sysfs" --collector.textfile.directory="$work/textfile" \
  --web.listen-address="127.0.0.1:$P_NE_DEFAULT"
mapfile -t ours < <(nixlines "map (c: \"--collector.\${c}\") mon.nodeExporter.collectors ++ mon.nodeExporter.extraFlags { textfileDirectory = \"$work/textfile\"; }")
bg prometheus-node-exporter "${ours[@]}" --path.sysfs="$work/sysfs" --web.listen-address="127.0.0.1:$P_NE_OURS"
cat >"$work/detector.toml" <<TOML
node = "bench-node"
camera = "cam0"
[log]
format = "json"
[http]
listen = "127.0.0.1:$P_DET"
[source]
kind = "file"
path = "$ROOT/demo/demo.avi"
pace = "realtime"
loop = true
[model]
source = "$ROOT/model/demo"
[clip]
spool-dir = "$work/spool"
min-free-space = "1 MB"
TOML
bg "$BIN" --config "$work/detector.toml" detect
# The watchdog as in the pod: the detector's config, its own port, an outbox instead of SMTP.
sed -e "s|^listen = .*|listen = \"127.0.0.1:$P_WD\"|" "$work/detector.toml" >"$work/watchdog.toml"
printf '[smtp]\noutbox-dir = "%s"\n' "$work/outbox" >>"$work/watchdog.toml"
bg "$BIN" --config "$work/watchdog.toml" watch

# The counting proxies: a and b scrape through them, c remote-writes through one.
bg python3 "$ROOT/bench/count-proxy.py" --stats "$work/bytes.json" \
  "a-node-exporter=$PX_A_NE:$P_NE_DEFAULT" "a-detector=$PX_A_DET:$P_DET" "a-watchdog=$PX_A_WD:$P_WD" \
  "b-node-exporter=$PX_B_NE:$P_NE_DEFAULT" "b-detector=$PX_B_DET:$P_DET" "b-watchdog=$PX_B_WD:$P_WD" \
  "c-remote-write=$PX_C_RW:$P_C"

# (a) plain central scrape.
cat >"$work/a.yml" <<YAML
global: {scrape_interval: $INTERVAL}
scrape_configs:
  - job_name: node
    static_configs: [{targets: ["127.0.0.1:$PX_A_NE"], labels: {node: bench-node}}]
  - job_name: edgewatch-detector
    static_configs: [{targets: ["127.0.0.1:$PX_A_DET"], labels: {node: bench-node, camera: cam0}}]
  - job_name: edgewatch-watchdog
    static_configs: [{targets: ["127.0.0.1:$PX_A_WD"], labels: {node: bench-node, camera: cam0}}]
YAML
# (b) the published config: our central scrape mode (keep-lists +
# sample_limit 2000), through the proxies, without the central's own jobs.
nixjson "let c = mon.central.render { node = \"bench-monitor\"; mode = \"scrape\"; scrapeInterval = \"$INTERVAL\";
    hosts = [ { name = \"bench-node\"; address = \"127.0.0.1\"; camera = \"cam0\"; } ];
    ports = { nodeExporter = $PX_B_NE; detector = $PX_B_DET; watchdog = $PX_B_WD; }; };
  in c // { scrape_configs = map (j: j // { static_configs = builtins.filter (s: s.labels.node == \"bench-node\") j.static_configs; })
      (builtins.filter (j: builtins.elem j.job_name [ \"node\" \"edgewatch-detector\" \"edgewatch-watchdog\" ]) c.scrape_configs); }" >"$work/b.yml"
# (c) ours: the agent as rendered for a camera node (no cAdvisor here: no
# kubelet), and a central with the remote-write receiver.
nixjson "let r = mon.agent.render { node = \"bench-node\"; camera = \"cam0\"; scrapeInterval = \"$INTERVAL\";
    remoteWriteUrl = \"http://127.0.0.1:$PX_C_RW/api/v1/write\";
    nodeExporter = \"127.0.0.1:$P_NE_OURS\"; detector = \"127.0.0.1:$P_DET\"; watchdog = \"127.0.0.1:$P_WD\"; self = \"127.0.0.1:$P_AGENT\"; };
  in r" >"$work/agent.yml"
echo 'global: {scrape_interval: 15s}' >"$work/c.yml"
for f in a b c; do promtool check config "$work/$f.yml" >/dev/null; done
promtool check config --agent "$work/agent.yml" >/dev/null

central() { # central NAME PORT
  bg prometheus --config.file="$work/$1.yml" --storage.tsdb.path="$work/$1-data" \
    --web.listen-address="127.0.0.1:$2" --web.enable-remote-write-receiver
}
central a "$P_A"
central b "$P_B"
central c "$P_C"
mapfile -t aflags < <(nixlines "mon.agent.flags { walDir = \"$work/agent-wal\"; }")
bg prometheus --enable-feature=agent --config.file="$work/agent.yml" "${aflags[@]}" \
  --web.listen-address="127.0.0.1:$P_AGENT" --storage.remote.flush-deadline=5s
for p in "$P_A" "$P_B" "$P_C" "$P_AGENT"; do wait_http "http://127.0.0.1:$p/-/ready"; done

echo "metrics bandwidth: warming up ${WARMUP} s, then measuring ${SECS} s ($(nproc) cores, edgewatch $(basename "$(dirname "$BIN")"))" >&2
sleep "$WARMUP"
cp "$work/bytes.json" "$work/bytes0.json"
sleep "$SECS"
cp "$work/bytes.json" "$work/bytes1.json"

series() { # series PORT -> JSON {job: count} of series for bench-node
  curl -fsS "http://127.0.0.1:$1/api/v1/query" --data-urlencode 'query=count by (job) ({node="bench-node"})' |
    python3 -c 'import json,sys; print(json.dumps({r["metric"].get("job","?"): int(r["value"][1]) for r in json.load(sys.stdin)["data"]["result"]}))'
}
python3 - "$work/bytes0.json" "$work/bytes1.json" "$SECS" "$INTERVAL" "$(series "$P_A")" "$(series "$P_B")" "$(series "$P_C")" <<'PY'
import json, sys
b0, b1 = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
secs, interval = float(sys.argv[3]), sys.argv[4]
series = {k: json.loads(v) for k, v in zip("abc", sys.argv[5:8])}
per_min = {n: (b1[n]["up"] + b1[n]["down"] - b0[n]["up"] - b0[n]["down"]) * 60 / secs for n in b1}
def part(n):
    return per_min[n], (b1[n]["up"] - b0[n]["up"]) * 60 / secs, (b1[n]["down"] - b0[n]["down"]) * 60 / secs
a = per_min["a-node-exporter"] + per_min["a-detector"] + per_min["a-watchdog"]
b = per_min["b-node-exporter"] + per_min["b-detector"] + per_min["b-watchdog"]
c = per_min["c-remote-write"]
print(f"metrics bandwidth per node, {interval} scrape interval, {secs:.0f} s measured, TCP payload both directions (HTTP headers + bodies):")
print(f"  (a) plain central scrape:              {a:9.0f} B/min  (node exporter {per_min['a-node-exporter']:.0f}, detector {per_min['a-detector']:.0f}, watchdog {per_min['a-watchdog']:.0f}; "
      f"{sum(series['a'].values())} series stored)")
print(f"  (b) published (sample_limit + keep):   {b:9.0f} B/min  (node exporter {per_min['b-node-exporter']:.0f}, detector {per_min['b-detector']:.0f}, watchdog {per_min['b-watchdog']:.0f}; "
      f"{sum(series['b'].values())} series stored)")
tot, up, down = part("c-remote-write")
print(f"  (c) ours (agent + remote write):       {c:9.0f} B/min  (requests {up:.0f}, responses {down:.0f}; "
      f"{sum(series['c'].values())} series stored: {series['c']})")
print(f"  (c)/(a) = {100 * c / a:.1f} %   (b)/(a) = {100 * b / a:.1f} %   target (c) <= 12 %: {'met' if c <= 0.12 * a else 'NOT met'}")
PY
