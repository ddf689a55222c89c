# edgewatch-health-gate: exits 0 once this node is healthy, 1 if it is not
# healthy before the deadline. Run by edgewatch-activate after a switch, and
# usable by hand. Configured through the environment (set by
# nixos/modules/rollout.nix, so the *new* generation decides what "healthy"
# means for itself):
#   GATE_TIMEOUT        seconds to wait for health (default 300)
#   GATE_UNITS          space-separated units that must be active
#   GATE_K3S_NODE       1: this host's k3s Node must report Ready
#   GATE_KUBECONFIG     kubeconfig for that check (the kubelet's own on agents)
#   GATE_DETECTOR_PODS  1: the edgewatch pods on this node must be Ready
#                       (their readiness probe is the detector's /readyz)
#   GATE_READYZ_URLS    space-separated URLs that must answer 2xx
#   GATE_PREFLIGHT      the node preflight (nixos/modules/node-preflight.sh);
#                       checked first, its failed checks are named
#   NODE_NAME           Kubernetes node name (default: hostname)
set -euo pipefail

timeout=${GATE_TIMEOUT:-300}
node=${NODE_NAME:-$(hostname)}
deadline=$((SECONDS + timeout))
last_problem="not checked yet"

kubectl_() {
  k3s kubectl --kubeconfig "${GATE_KUBECONFIG:?GATE_KUBECONFIG is required with the k3s checks}" "$@"
}

check() {
  local unit failed ready url out
  if [ -n "${GATE_PREFLIGHT:-}" ] && ! out=$("$GATE_PREFLIGHT" 2>&1); then
    # The last line names the failed checks, the first FAIL line says why
    # and how to fix it (journal priority prefixes stripped).
    last_problem="preflight failed: $(sed -n 's/^preflight: FAILED: //p' <<<"$out" | tail -n 1)"
    last_problem+=" ($(grep -m 1 'FAIL ' <<<"$out" | sed -E 's/^<[0-9]>//; s/^edgewatch-node-preflight: //'))"
    return 1
  fi
  for unit in ${GATE_UNITS:-}; do
    if ! systemctl is-active --quiet "$unit"; then
      last_problem="unit $unit is $(systemctl is-active "$unit" || true)"
      return 1
    fi
  done
  failed=$(systemctl list-units --state=failed --no-legend --plain | awk '{print $1}' | tr '\n' ' ')
  if [ -n "$failed" ]; then
    last_problem="failed units: $failed"
    return 1
  fi
  if [ "${GATE_K3S_NODE:-0}" = 1 ]; then
    ready=$(kubectl_ get node "$node" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)
    if [ "$ready" != True ]; then
      last_problem="k3s node $node Ready=${ready:-unknown}"
      return 1
    fi
  fi
  if [ "${GATE_DETECTOR_PODS:-0}" = 1 ]; then
    ready=$(kubectl_ get pods --namespace edgewatch \
      --field-selector "spec.nodeName=$node" \
      --selector app.kubernetes.io/name=edgewatch \
      -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}' 2>/dev/null || true)
    if [ -z "$ready" ] || [ -n "${ready//True /}" ]; then
      last_problem="edgewatch pods on $node not all Ready (${ready:-none scheduled})"
      return 1
    fi
  fi
  for url in ${GATE_READYZ_URLS:-}; do
    if ! curl --silent --show-error --fail --max-time 5 --output /dev/null "$url"; then
      last_problem="$url is not ready"
      return 1
    fi
  done
  return 0
}

until check; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "edgewatch-health-gate: UNHEALTHY after ${timeout}s: $last_problem" >&2
    exit 1
  fi
  sleep 5
done
echo "edgewatch-health-gate: healthy"
