#!/usr/bin/env bash
# Observability checks (issue 6), against real Prometheus 2.42 and node
# exporter 1.5 from Debian 12 and the real `edgewatch detect` and
# `edgewatch watch`:
#   * every config nix/lib/monitoring renders, for the CI topology and for
#     every host of nixos/site.nix, passes `promtool check config` (agent
#     configs with --agent), the rules `promtool check rules` and their unit
#     tests `promtool test rules` (every alert fires in a test);
#   * the Pi throttling script's test, the dashboards' structure;
#   * every metric name a dashboard or rule uses is kept by the keep-lists,
#     every kept name is used, and every used name is in the exposition of
#     node exporter (on a Pi 4 sysfs fixture), the detector, the watchdog or
#     Prometheus, except cAdvisor's (no kubelet here), listed as pending;
#   * end to end: node exporter + detector + watchdog (sharing the spool,
#     mailing into an outbox directory) -> Prometheus agent (rendered
#     config) -> remote write -> central Prometheus (rendered config): alert
#     e-mails are sent, and every dashboard query returns data there;
#   * outage: the central Prometheus is stopped for OUTAGE_SECONDS (default
#     300) and restarted; afterwards no kept series has a hole;
#   * Alertmanager 0.25 (Debian 12): the rendered configs (CI and the real
#     site) pass `amtool check-config` after the same envsubst pass as the
#     NixOS module's, which changes nothing but $SMTP_PASSWORD; alerts posted
#     to it are mailed over STARTTLS with AUTH to a real SMTP server
#     (tests/fixtures/smtp_server.py), resolved ones too, NodeDown holds back
#     its node's other alerts, and the password shows in neither its API nor
#     its log.
# Everything binds 127.0.0.1 on free ports and is stopped on exit. Installs
# what it needs (apt, pip) on a fresh Debian 12 machine. Ends with
# "observability-checks: N passed, M failed".
#   bash .ci/observability-checks.sh          EW_BIN=... OUTAGE_SECONDS=...
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

OUTAGE_SECONDS=${OUTAGE_SECONDS:-300}
INTERVAL=5 # scrape interval of the test topology, seconds
PROMQL_PARSER_VERSION=0.11.0
PYYAML_VERSION=6.0.3
AIOSMTPD_VERSION=1.4.6 # as scripts/deps.sh: the SMTP server of the Alertmanager check
tools=${EW_CI_TOOLS:-/opt/edgewatch-ci}
started_at=$SECONDS

log() { echo "observability-checks: $*"; }

# ---------------------------------------------------------------- install
install_tools() {
  local apt_pkgs=() c
  for c in prometheus:prometheus promtool:prometheus prometheus-node-exporter:prometheus-node-exporter \
    prometheus-alertmanager:prometheus-alertmanager nix-instantiate:nix-bin shellcheck:shellcheck curl:curl \
    openssl:openssl envsubst:gettext-base; do
    command -v "${c%%:*}" >/dev/null || apt_pkgs+=("${c#*:}")
  done
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_pkgs+=(python3-venv)
  if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    log "apt-get install ${apt_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
    # The packages just installed start their services (on :9090/:9100/
    # :9093); this script runs its own copies on free ports and needs none.
    if [ -d /run/systemd/system ]; then
      systemctl disable --now prometheus prometheus-node-exporter prometheus-alertmanager >/dev/null 2>&1 || true
    fi
  fi
  if ! "$tools/obs/bin/python" -c "import promql_parser, yaml, aiosmtpd" 2>/dev/null ||
    [ "$("$tools/obs/bin/pip" show promql-parser 2>/dev/null | sed -n 's/^Version: //p')" != "$PROMQL_PARSER_VERSION" ]; then
    log "pip install promql-parser $PROMQL_PARSER_VERSION, PyYAML $PYYAML_VERSION, aiosmtpd $AIOSMTPD_VERSION"
    python3 -m venv "$tools/obs"
    "$tools/obs/bin/pip" install --quiet "promql-parser==$PROMQL_PARSER_VERSION" "PyYAML==$PYYAML_VERSION" "aiosmtpd==$AIOSMTPD_VERSION"
  fi
}

find_edgewatch() {
  local t=${CARGO_TARGET_DIR:-$root/target} b
  # Debug first: scripts/test.sh has just built it from this tree (a release binary may be stale).
  for b in "${EW_BIN:-}" "$t/debug/edgewatch" "$t/release/edgewatch"; do
    if [ -n "$b" ] && [ -x "$b" ]; then
      echo "$b"
      return
    fi
  done
  log "no edgewatch binary: cargo build --release --locked" >&2
  (cd "$root" && cargo build --release --locked --quiet --bin edgewatch) >&2
  echo "$t/release/edgewatch"
}

# ---------------------------------------------------------------- harness
passed=0
failed=0
failures=()
work=$(mktemp -d -t edgewatch-obs.XXXXXX)
# Checks run in subshells (so that `set -e` holds inside them): the
# processes they start are recorded here, not in a variable.
touch "$work/pids"

stop_pid() { # stop_pid PID: TERM, then KILL after 20 s
  local pid=$1 _
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in $(tac "$work/pids"); do stop_pid "$pid"; done
  rm -rf "$work"
}
trap cleanup EXIT

check() { # check NAME COMMAND...
  local name=$1 rc
  shift
  local started=$SECONDS
  # Not `if "$@"`: bash ignores set -e in a function called as a condition.
  set +e
  (
    set -e
    "$@"
  ) >"$work/log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "PASS $name ($((SECONDS - started))s)"
    grep -E '^((names|queries|holes|dashboards|rule-tests|outage|wal|edgewatch logs|alertmanager|alertmanager e-mail):|NOTE )' "$work/log" | sed 's/^/     /' || true
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "FAIL $name"
    sed 's/^/    /' "$work/log" | tail -n 60
  fi
}

py() { "$tools/obs/bin/python" "$root/.ci/observability/obs.py" "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nixjson() { nix-instantiate --eval --strict --json -E "let lib = import $root/nix/lib; mon = lib.monitoring; in $1"; }
nixstr() { nix-instantiate --eval --strict --json -E "let lib = import $root/nix/lib; mon = lib.monitoring; in $1" | python3 -c 'import json,sys; v=json.load(sys.stdin); print("\n".join(v) if isinstance(v, list) else v)'; }
wait_http() { # wait_http URL SECONDS
  local _
  for _ in $(seq 1 $(($2 * 2))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.5
  done
  echo "no answer from $1 within $2 s" >&2
  return 1
}

# ---------------------------------------------------------------- render
render_all() {
  mkdir -p "$work/rules-test" "$work/site"
  nixjson 'mon.series' >"$work/series.json"
  # Unit-test rendering (nodes pi-a, pi-b), next to its test file.
  nixjson 'mon.rules.render { nodes = [ "pi-a" "pi-b" ]; }' >"$work/rules-test/rules.json"
  cp nix/tests/monitoring/rules.test.yml "$work/rules-test/"
  # The CI topology: one camera node "ci-node-01" and the monitoring host.
  nixjson 'mon.rules.render { nodes = [ "ci-node-01" "ci-monitor" ]; }' >"$work/e2e-rules.json"
  nixjson "mon.agent.render {
      node = \"ci-node-01\"; camera = \"cam0\";
      remoteWriteUrl = \"http://127.0.0.1:$P_CENTRAL/api/v1/write\";
      scrapeInterval = \"${INTERVAL}s\";
      nodeExporter = \"127.0.0.1:$P_NODE\"; detector = \"127.0.0.1:$P_DETECTOR\";
      watchdog = \"127.0.0.1:$P_WATCHDOG\"; self = \"127.0.0.1:$P_AGENT\"; }" >"$work/agent.yml"
  nixjson "mon.central.render {
      node = \"ci-monitor\"; self = \"127.0.0.1:$P_CENTRAL\"; nodeExporter = \"127.0.0.1:$P_NODE\";
      scrapeInterval = \"${INTERVAL}s\"; evaluationInterval = \"${INTERVAL}s\";
      ruleFiles = [ \"$work/e2e-rules.json\" ]; }" >"$work/central.yml"
  nixstr "map (c: \"--collector.\${c}\") mon.nodeExporter.collectors ++ mon.nodeExporter.extraFlags { textfileDirectory = \"$work/textfile\"; }" >"$work/node-exporter.flags"
  nixstr "mon.agent.flags { walDir = \"$work/agent-wal\"; }" >"$work/agent.flags"
  nixstr 'mon.central.flags' >"$work/central.flags"
  nixjson '(mon.grafana.datasources { prometheusUrl = "http://127.0.0.1:9090"; lokiUrl = "http://127.0.0.1:3100"; })' >"$work/datasources.json"
  # The real site (nixos/site.nix), as the NixOS modules render it.
  local site='lib.site.build (import '"$root"'/nixos/site.nix)'
  nixjson "mon.hosts.rulesFor ($site)" >"$work/site/rules.json"
  nixstr "let b = $site; in builtins.filter (n: n != b.monitor) (builtins.attrNames b.hosts)" >"$work/site/agents"
  local h
  while read -r h; do
    nixjson "let b = $site; in mon.hosts.agentFor { built = b; name = \"$h\";
        cadvisor = if b.hosts.\"$h\".role == \"node\" then { tokenFile = \"/var/lib/edgewatch/secrets/kubelet-metrics-token\"; caFile = \"/var/lib/rancher/k3s/agent/server-ca.crt\"; } else null; }" \
      >"$work/site/agent-$h.yml"
    nixjson "let b = $site; in mon.hosts.promtailFor { built = b; name = \"$h\"; pods = true; }" >"$work/site/promtail-$h.json"
  done <"$work/site/agents"
  for mode in agent scrape; do
    nixjson "mon.hosts.centralFor { built = $site; mode = \"$mode\"; ruleFiles = [ \"$work/site/rules.json\" ]; }" >"$work/site/central-$mode.yml"
  done
  # With edgewatch.monitoring.alerts: alerting to the local Alertmanager.
  nixjson "mon.hosts.centralFor { built = $site; ruleFiles = [ \"$work/site/rules.json\" ]; alertmanager = true; }" >"$work/site/central-alerting.yml"
  ls "$work" "$work/site"
}

promtool_configs() {
  promtool check config --agent "$work/agent.yml"
  promtool check config "$work/central.yml"
  local f
  # The kubelet token and CA exist only on the nodes: syntax only, as the
  # NixOS module's checkConfig = "syntax-only".
  for f in "$work"/site/agent-*.yml; do promtool check config --agent --syntax-only "$f"; done
  for f in "$work"/site/central-*.yml; do promtool check config "$f"; done
}

promtool_rules() {
  promtool check rules "$work/site/rules.json" "$work/e2e-rules.json" "$work/rules-test/rules.json"
}

promtool_tests() {
  (cd "$work/rules-test" && promtool test rules rules.test.yml)
  py rule-tests "$work/rules-test/rules.json" "$work/rules-test/rules.test.yml"
}

rendered_json_sane() {
  # promtail and Grafana cannot run here: at least the rendered files parse
  # and name what the pipeline and the dashboards rely on.
  python3 - "$work" <<'PY'
import glob, json, sys
w = sys.argv[1]
for f in glob.glob(f"{w}/site/promtail-*.json"):
    c = json.load(open(f))
    assert c["clients"][0]["url"].endswith("/loki/api/v1/push"), f
    assert set(c["clients"][0]["external_labels"]) == {"node", "role"}, f
    print(f.rsplit("/", 1)[1], [j["job_name"] for j in c["scrape_configs"]])
ds = json.load(open(f"{w}/datasources.json"))
assert sorted(d["uid"] for d in ds["datasources"]) == ["loki", "prometheus"]
print("datasources:", [(d["uid"], d["type"]) for d in ds["datasources"]])
PY
}

shellcheck_ours() {
  shellcheck -s bash .ci/observability-checks.sh nixos/hardware/pi-throttled.sh nix/tests/pi-throttled-test.sh bench/metrics-bandwidth.sh
}

# ---------------------------------------------------------------- alertmanager
# The SMTP credentials of the test relay: test values, not secrets.
AM_USER=alertmanager
AM_PASSWORD='ci-Smtp+pass/w0rd!'

# The CI config (relay: the test SMTP server, STARTTLS + AUTH, its
# self-signed certificate as the CA) and the real site's, as
# nixos/profiles/monitoring.nix renders them; then the NixOS module's
# preStart: envsubst over the whole file. The check passes only if that pass
# changed nothing but the placeholder (a stray `$` would be mangled).
alertmanager_configs() {
  mkdir -p "$work/am/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$work/am/tls/key.pem" -out "$work/am/tls/cert.pem" 2>/dev/null
  nixjson "mon.alertmanager.render {
      to = [ \"ops@example.org\" ]; from = \"edgewatch@ci.example.org\";
      smarthost = \"127.0.0.1:$P_SMTP\"; username = \"$AM_USER\"; requireTls = true;
      caFile = \"$work/am/tls/cert.pem\";
      groupWait = \"1s\"; groupInterval = \"2s\"; }" >"$work/am/ci.json"
  nixjson "mon.hosts.alertmanagerFor { built = lib.site.build (import $root/nixos/site.nix);
      settings = { to = [ \"ops@site-a.edgewatch.example\" ]; from = \"monitor@site-a.edgewatch.example\";
                   smarthost = \"smtp.site-a.edgewatch.example:587\"; username = \"monitor\"; }; }" >"$work/am/site.json"
  nixstr 'mon.alertmanager.flags' >"$work/am/flags"
  local f
  for f in ci site; do
    # Without a list of variables envsubst replaces every $NAME (unset: by
    # nothing), as the module's does.
    env -i SMTP_PASSWORD="$AM_PASSWORD" envsubst <"$work/am/$f.json" >"$work/am/$f.yml"
    python3 - "$work/am/$f.json" "$work/am/$f.yml" "$AM_PASSWORD" <<'PY'
import json, sys
raw, sub, password = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3]
assert raw.count("$") == 1 and "$SMTP_PASSWORD" in raw, "the only $ must be the password placeholder"
assert sub == raw.replace("$SMTP_PASSWORD", password), "envsubst changed more than the placeholder"
assert password not in raw
e = json.loads(sub)["receivers"][0]["email_configs"][0]
assert e["auth_password"] == password and e["require_tls"] is True, e
print(f"alertmanager: {sys.argv[1].rsplit('/', 1)[1]}: envsubst replaced only $SMTP_PASSWORD; relay {e['smarthost']}, hello {e['hello']}")
PY
  done
  amtool check-config "$work/am/ci.yml" "$work/am/site.yml"
}

# The CI config run by a real Alertmanager, mailing into a real SMTP server
# that requires STARTTLS and AUTH (group_wait 1 s, group_interval 2 s).
alertmanager_email() {
  local flags smtp_pid am_pid _
  mkdir -p "$work/am/mail"
  # Alertmanager 0.25 takes the first mechanism the server lists, LOGIN here,
  # and accepts only the challenges "Username:" and "Password:", which
  # Postfix/Cyrus, Dovecot and Exchange send; aiosmtpd's own ("User Name\0")
  # it refuses. So the test server sends those.
  "$tools/obs/bin/python" -c '
import runpy, sys
from aiosmtpd.smtp import SMTP
SMTP.AuthLoginUsernameChallenge, SMTP.AuthLoginPasswordChallenge = "Username:", "Password:"
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")' \
    tests/fixtures/smtp_server.py --port "$P_SMTP" --maildir "$work/am/mail" \
    --mode starttls --auth "$AM_USER:$AM_PASSWORD" --cert "$work/am/tls/cert.pem" --key "$work/am/tls/key.pem" \
    >"$work/am/smtp.log" 2>&1 &
  smtp_pid=$!
  echo "$smtp_pid" >>"$work/pids"
  for _ in $(seq 1 40); do
    grep -q '^READY' "$work/am/smtp.log" && break
    sleep 0.5
  done
  grep -q '^READY' "$work/am/smtp.log" || { cat "$work/am/smtp.log"; return 1; }
  mapfile -t flags <"$work/am/flags"
  prometheus-alertmanager --config.file="$work/am/ci.yml" --storage.path="$work/am/data" \
    --web.listen-address="127.0.0.1:$P_AM" "${flags[@]}" >"$work/am/alertmanager.log" 2>&1 &
  am_pid=$!
  echo "$am_pid" >>"$work/pids"
  wait_http "http://127.0.0.1:$P_AM/-/ready" 30
  python3 - "http://127.0.0.1:$P_AM" "$work/am/mail" "$AM_PASSWORD" <<'PY' || {
import email, email.policy, glob, json, sys, time, urllib.parse, urllib.request
am, maildir, password = sys.argv[1:]

def post(alerts):
    req = urllib.request.Request(f"{am}/api/v2/alerts", json.dumps(alerts).encode(),
                                 {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()

def now(offset=0):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))

def alert(name, node, ends=None, **labels):
    a = {"labels": {"alertname": name, "node": node, "severity": "critical", **labels},
         "annotations": {"summary": f"{name} on {node} (CI)"}, "startsAt": now(-60)}
    if ends:
        a["endsAt"] = ends
    return a

def mails():
    out = []
    for f in sorted(glob.glob(f"{maildir}/*.eml")):
        m = email.message_from_binary_file(open(f, "rb"), policy=email.policy.default)
        body = m.get_body(("html", "plain")).get_content()
        out.append({"subject": str(m["subject"]), "body": body, "env": json.load(open(f[:-4] + ".json"))})
    return out

def wait_mail(pred, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        hit = [m for m in mails() if pred(m)]
        if hit:
            return hit
        time.sleep(0.3)
    raise SystemExit(f"no e-mail {what} within {timeout} s; got {[m['subject'] for m in mails()]}")

t0 = time.time()
# ci-node-02 is down: its NodeDown first, then an alert that it must hold back.
post([alert("NodeDown", "ci-node-02")])
time.sleep(0.5)
post([alert("CameraDown", "ci-node-01", camera="cam0"), alert("CameraDown", "ci-node-02", camera="cam0")])

firing = wait_mail(lambda m: "FIRING" in m["subject"] and "CameraDown" in m["subject"] and "ci-node-01" in m["subject"],
                   "for CameraDown on ci-node-01")[0]
print(f"alertmanager e-mail: {firing['subject']!r} after {time.time() - t0:.1f} s")
assert "ci-node-01" in firing["body"] and "CameraDown on ci-node-01 (CI)" in firing["body"], firing["body"][:2000]
env = firing["env"]
assert env["tls"] and env["auth"], f"not STARTTLS + AUTH: {env}"
assert env["from"] == "edgewatch@ci.example.org" and env["to"] == ["ops@example.org"], env
nodedown = wait_mail(lambda m: "NodeDown" in m["subject"] and "ci-node-02" in m["subject"], "for NodeDown on ci-node-02")[0]
print(f"alertmanager e-mail: {nodedown['subject']!r}")

q = urllib.parse.urlencode([("filter", 'alertname="CameraDown"'), ("filter", 'node="ci-node-02"')])
held = json.load(urllib.request.urlopen(f"{am}/api/v2/alerts?{q}", timeout=10))
assert len(held) == 1 and held[0]["status"]["state"] == "suppressed" and held[0]["status"]["inhibitedBy"], held
print(f"alertmanager: CameraDown on ci-node-02 is {held[0]['status']['state']}, inhibited by NodeDown")

# Resolved alerts are mailed too (send_resolved), one group_interval later.
post([alert("CameraDown", "ci-node-01", ends=now(), camera="cam0")])
resolved = wait_mail(lambda m: "RESOLVED" in m["subject"] and "CameraDown" in m["subject"] and "ci-node-01" in m["subject"],
                     "resolving CameraDown on ci-node-01")[0]
print(f"alertmanager e-mail: {resolved['subject']!r}")

# Give the held-back group time for its first flush and two more (1 s + 2 x 2 s).
time.sleep(max(0.0, t0 + 6 - time.time()))
everything = mails()
leaked = [m["subject"] for m in everything if "CameraDown" in m["subject"] and "ci-node-02" in m["subject"]]
assert not leaked, f"inhibited alert was mailed: {leaked}"
assert all(m["env"]["tls"] and m["env"]["auth"] for m in everything)
print(f"alertmanager: {len(everything)} e-mails, all over STARTTLS with AUTH; none for the held-back alert")

status = urllib.request.urlopen(f"{am}/api/v2/status", timeout=10).read().decode()
assert password not in status and "auth_password: <secret>" in status, "the password shows in /api/v2/status"
PY
    tail -n 20 "$work/am/alertmanager.log" "$work/am/smtp.log"
    return 1
  }
  if grep -qF "$AM_PASSWORD" "$work/am/alertmanager.log" "$work/am/smtp.log"; then
    echo "the SMTP password is in a log" >&2
    return 1
  fi
  echo "alertmanager: the password shows in neither /api/v2/status nor the logs"
  # Not needed by the later checks (on failure, cleanup stops them).
  stop_pid "$am_pid"
  stop_pid "$smtp_pid"
}

# ---------------------------------------------------------------- run
start_node_exporter() {
  mkdir -p "$work/textfile"
  py pi-sysfs "$work/sysfs"
  SYSFS="$work/sysfs" VCGENCMD=/nonexistent bash nixos/hardware/pi-throttled.sh "$work/textfile"
  local flags
  mapfile -t flags <"$work/node-exporter.flags"
  prometheus-node-exporter "${flags[@]}" --path.sysfs="$work/sysfs" \
    --web.listen-address="127.0.0.1:$P_NODE" >"$work/node-exporter.log" 2>&1 &
  echo $! >>"$work/pids"
  wait_http "http://127.0.0.1:$P_NODE/metrics" 20
}

start_detector() {
  cat >"$work/detector.toml" <<TOML
node = "ci-node-01"
camera = "cam0"
[log]
format = "json"
[http]
listen = "127.0.0.1:$P_DETECTOR"
[source]
kind = "file"
path = "$root/demo/demo.avi"
pace = "realtime"
loop = true
[model]
source = "$root/model/demo"
[clip]
spool-dir = "$work/spool"
min-free-space = "1 MB"
[archive]
target = "$work/archive"
TOML
  mkdir -p "$work/spool" "$work/archive"
  "$EDGEWATCH" --config "$work/detector.toml" detect >"$work/detector.log" 2>&1 &
  echo $! >>"$work/pids"
  wait_http "http://127.0.0.1:$P_DETECTOR/metrics" 60
}

# The watchdog shares the detector's config file, as the two containers of a
# pod do (so it waits for the same archive before deleting a clip), with its
# own port and an outbox directory instead of an SMTP relay.
start_watchdog() {
  sed -e "s|^listen = .*|listen = \"127.0.0.1:$P_WATCHDOG\"|" "$work/detector.toml" >"$work/watchdog.toml"
  cat >>"$work/watchdog.toml" <<TOML
[smtp]
outbox-dir = "$work/outbox"
to = ["ops@example.org"]
TOML
  "$EDGEWATCH" --config "$work/watchdog.toml" watch >"$work/watchdog.log" 2>&1 &
  echo $! >>"$work/pids"
  wait_http "http://127.0.0.1:$P_WATCHDOG/metrics" 30
}

start_central() {
  local flags
  mapfile -t flags <"$work/central.flags"
  prometheus --config.file="$work/central.yml" --storage.tsdb.path="$work/central-data" \
    --web.listen-address="127.0.0.1:$P_CENTRAL" "${flags[@]}" >>"$work/central.log" 2>&1 &
  echo $! >"$work/central.pid"
  echo $! >>"$work/pids"
  wait_http "http://127.0.0.1:$P_CENTRAL/-/ready" 60
}

start_agent() {
  local flags
  mapfile -t flags <"$work/agent.flags"
  # flush-deadline: only so that stopping the test is quick.
  prometheus --enable-feature=agent --config.file="$work/agent.yml" "${flags[@]}" \
    --web.listen-address="127.0.0.1:$P_AGENT" --storage.remote.flush-deadline=5s >"$work/agent.log" 2>&1 &
  echo $! >>"$work/pids"
  wait_http "http://127.0.0.1:$P_AGENT/-/ready" 30
}

start_all() {
  start_node_exporter
  start_detector
  start_watchdog
  start_central
  start_agent
  # The agent batches for up to 60 s (batch_send_deadline): wait for the
  # detector's series and enough samples for every rate() window.
  py wait-series --prom "http://127.0.0.1:$P_CENTRAL" --timeout 150 \
    --query 'count_over_time(edgewatch_frames_captured_total{node="ci-node-01"}[2m]) >= 6'
  py wait-series --prom "http://127.0.0.1:$P_CENTRAL" --timeout 120 \
    --query 'prometheus_remote_storage_queue_highest_sent_timestamp_seconds{node="ci-node-01"}'
  # The demo video has an event about every 24 s: an e-mail is in the outbox
  # and counted on the central well within this.
  py wait-series --prom "http://127.0.0.1:$P_CENTRAL" --timeout 150 \
    --query 'edgewatch_alerts_sent_total{node="ci-node-01", job="edgewatch-watchdog"} > 0'
  ls "$work/outbox"/*.eml
}

# clip_write_failed_total{reason} appears only after a failed clip: a second,
# short-lived detector on the demo video with a spool it may not fill
# (clip.min-free-space above the disk's free space) provides it.
failing_detector_exposition() {
  local port pid _
  port=$(free_port)
  sed -e "s|^listen = .*|listen = \"127.0.0.1:$port\"|" -e 's|^pace = .*|pace = "fast"|' \
    -e "s|^spool-dir = .*|spool-dir = \"$work/spool-full\"|" -e 's|^min-free-space = .*|min-free-space = "1000 TB"|' \
    "$work/detector.toml" >"$work/detector-full.toml"
  mkdir -p "$work/spool-full"
  "$EDGEWATCH" --config "$work/detector-full.toml" detect >"$work/detector-full.log" 2>&1 &
  pid=$!
  echo "$pid" >>"$work/pids"
  for _ in $(seq 1 240); do
    if curl -fsS "http://127.0.0.1:$port/metrics" -o "$work/expo-detector-full.txt" 2>/dev/null &&
      grep -q '^edgewatch_clip_write_failed_total{' "$work/expo-detector-full.txt"; then
      stop_pid "$pid"
      grep '^edgewatch_clip_write_failed_total{' "$work/expo-detector-full.txt"
      return 0
    fi
    sleep 0.5
  done
  stop_pid "$pid"
  echo "the detector with a full spool reported no clip_write_failed_total within 120 s" >&2
  return 1
}

# smtp_errors_total{class} likewise: a second, short-lived watchdog whose
# relay refuses connections (a free port), given a copy of an archived clip.
smtp_down_watchdog_exposition() {
  local port relay pid clip _
  port=$(free_port)
  relay=$(free_port)
  for _ in $(seq 1 120); do
    clip=$(find "$work/archive" -name '*.json' -print -quit)
    [ -n "$clip" ] && break
    sleep 1
  done
  [ -n "$clip" ] || { echo "no archived clip within 120 s" >&2; return 1; }
  mkdir -p "$work/spool-smtp-down"
  # Sidecar last, as the detector writes them.
  cp "${clip%.json}.mp4" "$work/spool-smtp-down/"
  cp "$clip" "$work/spool-smtp-down/"
  cat >"$work/watchdog-smtp-down.toml" <<TOML
node = "ci-node-01"
camera = "cam0"
[log]
format = "json"
[http]
listen = "127.0.0.1:$port"
[clip]
spool-dir = "$work/spool-smtp-down"
[smtp]
host = "127.0.0.1"
port = $relay
tls = "none"
to = ["ops@example.org"]
TOML
  "$EDGEWATCH" --config "$work/watchdog-smtp-down.toml" watch >"$work/watchdog-smtp-down.log" 2>&1 &
  pid=$!
  echo "$pid" >>"$work/pids"
  for _ in $(seq 1 120); do
    if curl -fsS -H 'Accept: application/openmetrics-text; version=1.0.0' "http://127.0.0.1:$port/metrics" \
      -o "$work/expo-watchdog-smtp-down.txt" 2>/dev/null &&
      grep -q '^edgewatch_smtp_errors_total{' "$work/expo-watchdog-smtp-down.txt"; then
      stop_pid "$pid"
      grep '^edgewatch_smtp_errors_total{' "$work/expo-watchdog-smtp-down.txt"
      return 0
    fi
    sleep 0.5
  done
  stop_pid "$pid"
  echo "the watchdog with an unreachable relay reported no smtp_errors_total within 60 s" >&2
  return 1
}

metric_names() {
  failing_detector_exposition
  smtp_down_watchdog_exposition
  curl -fsS "http://127.0.0.1:$P_NODE/metrics" >"$work/expo-node-exporter.txt"
  curl -fsS -H 'Accept: application/openmetrics-text; version=1.0.0' "http://127.0.0.1:$P_DETECTOR/metrics" >"$work/expo-detector.txt"
  curl -fsS -H 'Accept: application/openmetrics-text; version=1.0.0' "http://127.0.0.1:$P_WATCHDOG/metrics" >"$work/expo-watchdog.txt"
  curl -fsS "http://127.0.0.1:$P_AGENT/metrics" >"$work/expo-agent.txt"
  curl -fsS "http://127.0.0.1:$P_CENTRAL/metrics" >"$work/expo-central.txt"
  py names --series "$work/series.json" --rules "$work/site/rules.json" --dashboards nix/dashboards \
    --exposition "$work/expo-node-exporter.txt" --exposition "$work/expo-detector.txt" \
    --exposition "$work/expo-agent.txt" --exposition "$work/expo-central.txt" \
    --exposition "$work/expo-detector-full.txt" --exposition "$work/expo-watchdog.txt" \
    --exposition "$work/expo-watchdog-smtp-down.txt"
}

edgewatch_logs_json() {
  # promtail's pipeline (nix/lib/monitoring/promtail.nix) reads edgewatch's
  # JSON lines and their `level`. Lines that are not edgewatch's (the
  # OpenH264 encoder writes plain text to stderr) must match the pipeline's
  # regex stage, which gives them a level too (RE2 and Python agree on it).
  python3 - "$work/site" "$work/detector.log" "$work/detector-full.log" "$work/watchdog.log" "$work/watchdog-smtp-down.log" <<'PY'
import glob, json, os, re, sys
pods = [j for f in sorted(glob.glob(f"{sys.argv[1]}/promtail-*.json"))
        for j in json.load(open(f))["scrape_configs"] if j["job_name"] == "pods"]
stages = [m["match"]["stages"] for m in pods[0]["pipeline_stages"] if "match" in m]
plain = re.compile(next(s["regex"]["expression"] for s in stages[0] if "regex" in s))
for path in sys.argv[2:]:
    levels, other = {}, []
    for l in open(path):
        if not l.strip():
            continue
        if not l.startswith("{"):
            m = plain.match(l)
            assert m, f"{path}: a plain line promtail would ship without a level: {l!r}"
            other.append(f"{m['level']}: {l.strip()[:60]}")
            continue
        o = json.loads(l)
        assert o["level"] in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR"), o
        assert o.get("message") and o.get("timestamp"), o
        levels[o["level"]] = levels.get(o["level"], 0) + 1
    assert levels, f"{path}: no JSON log lines"
    print(f"edgewatch logs: {os.path.basename(path)}: {sum(levels.values())} JSON lines {levels}, "
          f"{len(other)} plain lines from libraries, each with a level {other[:1]}")
PY
}

e2e_queries() {
  py queries --series "$work/series.json" --dashboards nix/dashboards --rules "$work/e2e-rules.json" \
    --exposition "$work/expo-detector.txt" --exposition "$work/expo-detector-full.txt" \
    --exposition "$work/expo-watchdog.txt" --exposition "$work/expo-watchdog-smtp-down.txt" \
    --prom "http://127.0.0.1:$P_CENTRAL" --since "$t_start"
}

outage() {
  local wal0 wal1 t0 t1
  wal0=$(du -sb "$work/agent-wal" | cut -f1)
  t0=$(date +%s)
  stop_pid "$(cat "$work/central.pid")"
  echo "outage: central Prometheus stopped at $(date -u +%T)Z for $OUTAGE_SECONDS s"
  sleep "$OUTAGE_SECONDS"
  t1=$(date +%s)
  wal1=$(du -sb "$work/agent-wal" | cut -f1)
  start_central
  echo "outage: restarted at $(date -u +%T)Z"
  # Caught up once the samples from 60 s after the restart have arrived.
  py wait-series --prom "http://127.0.0.1:$P_CENTRAL" --timeout 240 \
    --query "timestamp(up{job=\"node\", node=\"ci-node-01\"}) > $((t1 + 60))"
  echo "outage: caught up at $(date -u +%T)Z"
  py holes --prom "http://127.0.0.1:$P_CENTRAL" --match '{node="ci-node-01", __name__!~"ALERTS|ALERTS_FOR_STATE"}' \
    --start $((t0 - 60)) --end $((t1 + 60)) --interval "$INTERVAL" --min-series 50
  python3 -c "
d, s = $wal1 - $wal0, $t1 - $t0
print(f'wal: the agent WAL grew {d} bytes in {s} s of outage at a {$INTERVAL} s interval = {d * 86400 / s / 1e6:.1f} MB per day; at 15 s: ~{d * 86400 / s / 3 / 1e6:.1f} MB per day')"
}

install_tools
EDGEWATCH=$(find_edgewatch)
P_NODE=$(free_port)
P_DETECTOR=$(free_port)
P_WATCHDOG=$(free_port)
P_AGENT=$(free_port)
P_CENTRAL=$(free_port)
P_SMTP=$(free_port)
P_AM=$(free_port)
log "tools: $(prometheus --version 2>&1 | head -n 1), $(prometheus-node-exporter --version 2>&1 | head -n 1), $(prometheus-alertmanager --version 2>&1 | head -n 1), $(nix-instantiate --version), promql-parser $PROMQL_PARSER_VERSION; edgewatch: $EDGEWATCH; outage $OUTAGE_SECONDS s"

check "render every config (nix-instantiate: CI topology + every host of nixos/site.nix)" render_all
check "promtool check config (CI agent --agent, central; site: agents --agent --syntax-only, central agent+scrape+alerting)" promtool_configs
check "promtool check rules (site, CI, unit-test renderings)" promtool_rules
check "promtool test rules + every alert has a firing test" promtool_tests
check "rendered promtail and Grafana datasources are sane" rendered_json_sane
check "pi-throttled script (nix/tests/pi-throttled-test.sh)" bash nix/tests/pi-throttled-test.sh
check "shellcheck (observability scripts)" shellcheck_ours
check "dashboards: structure, datasources, every query parses" py dashboards nix/dashboards "$work/datasources.json"
check "alertmanager: rendered configs (CI + site) survive envsubst and pass amtool check-config" alertmanager_configs
check "alertmanager: alerts mailed over STARTTLS + AUTH, resolved too, NodeDown inhibits, password not exposed" alertmanager_email
t_start=$(date +%s)
check "start node exporter (Pi 4 sysfs fixture), detector, watchdog, central Prometheus, agent; data and alert e-mails arrive" start_all
check "metric names: used == kept, and exposed by node exporter / detector / watchdog / Prometheus (cAdvisor pending)" metric_names
check "detector and watchdog logs are JSON with a level; library lines match promtail's regex stage" edgewatch_logs_json
check "end to end: every dashboard query returns data from the central Prometheus" e2e_queries
check "outage: central down ${OUTAGE_SECONDS}s, then no hole in any kept series" outage

if [ "$failed" -gt 0 ]; then log "failed: ${failures[*]}"; fi
log "total time $((SECONDS - started_at)) s"
echo "observability-checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
