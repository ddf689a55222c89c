# edgewatch-activate: node-side half of the health-gated rollout.
#
#   edgewatch-activate --run TOPLEVEL   switch to TOPLEVEL, run the health gate,
#                                       wait for the deployer's confirmation;
#                                       on any failure, return to the previous
#                                       generation and exit 1
#   edgewatch-activate --confirm        confirm the running activation (the
#                                       deployer calls this over a *new* SSH
#                                       connection, proving SSH still works)
#   edgewatch-activate --status         print the state of the last activation
#   edgewatch-activate --rollback       return to the generation recorded before
#                                       the last activation (used by the
#                                       deployer on nodes it already upgraded
#                                       when a later node fails)
#
# The deployer starts `--run` in a transient systemd unit (systemd-run), so a
# dropped SSH connection cannot kill it half-way; if the deployer never
# confirms, the node rolls itself back (deploy-rs calls this "magic rollback").
# Environment: CONFIRM_TIMEOUT (seconds, default 120).
set -euo pipefail

profile=/nix/var/nix/profiles/system
state=/run/edgewatch-rollout
persist=/var/lib/edgewatch-rollout
confirm_timeout=${CONFIRM_TIMEOUT:-120}

generation() { readlink "$profile" | sed -E 's/^system-([0-9]+)-link$/\1/'; }

status() {
  mkdir -p "$state"
  echo "$1" >"$state/status.tmp" && mv "$state/status.tmp" "$state/status"
  echo "edgewatch-activate: $1" >&2
}

# roll_back PREVIOUS_GENERATION FAILED_GENERATION REASON
roll_back() {
  local previous=$1 failed=$2 reason=$3
  status "rolling-back: $reason"
  if [ "$failed" != "$previous" ]; then
    nix-env --profile "$profile" --switch-generation "$previous"
    "$profile/bin/switch-to-configuration" switch || true
    nix-env --profile "$profile" --delete-generations "$failed" || true
  fi
  status "rolled-back: $reason"
}

run() {
  local new=$1 previous current gate
  if [ ! -x "$new/bin/switch-to-configuration" ]; then
    echo "edgewatch-activate: $new is not a NixOS system (no bin/switch-to-configuration)" >&2
    exit 2
  fi
  mkdir -p "$state" "$persist"
  rm -f "$state/confirm"
  previous=$(generation)
  echo "$previous" >"$persist/previous-generation"
  status "switching to $new"
  nix-env --profile "$profile" --set "$new"
  current=$(generation)
  if ! "$new/bin/switch-to-configuration" switch; then
    roll_back "$previous" "$current" "switch-to-configuration failed"
    exit 1
  fi
  status "gating"
  # The new generation's gate, with the new generation's idea of healthy.
  # Its last line (the reason, e.g. the preflight check that failed) goes
  # into the status the deployer reports.
  gate=$new/sw/bin/edgewatch-health-gate
  if [ ! -x "$gate" ]; then
    roll_back "$previous" "$current" "health gate failed: $gate is missing"
    exit 1
  fi
  if ! "$gate" 2>&1 | tee "$state/gate.log"; then
    roll_back "$previous" "$current" "health gate failed: $(tail -n 1 "$state/gate.log" | sed 's/^edgewatch-health-gate: //')"
    exit 1
  fi
  status "awaiting-confirmation"
  local waited=0
  while [ ! -e "$state/confirm" ]; do
    if [ "$waited" -ge "$confirm_timeout" ]; then
      roll_back "$previous" "$current" "no confirmation within ${confirm_timeout}s"
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  status "done: generation $current"
}

case "${1:-}" in
  --run) run "${2:?usage: edgewatch-activate --run TOPLEVEL}" ;;
  --confirm) mkdir -p "$state" && touch "$state/confirm" ;;
  --status) cat "$state/status" 2>/dev/null || echo "no activation since boot" ;;
  --rollback)
    previous=$(cat "$persist/previous-generation")
    roll_back "$previous" "$(generation)" "requested by the deployer"
    ;;
  *)
    echo "usage: edgewatch-activate --run TOPLEVEL | --confirm | --status | --rollback" >&2
    exit 2
    ;;
esac
