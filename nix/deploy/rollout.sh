# edgewatch-rollout: health-gated rollout of the site's camera nodes.
#
#   nix run .#rollout -- [--dry-run] [NODE...]
#
# 1. builds every node's system closure (before touching anything),
# 2. deploys the canary, waits for its health gate and confirms it,
# 3. deploys the remaining nodes in parallel, same gate,
# 4. if any node fails, rolls back every node this run upgraded.
# A node that fails its own gate (or loses SSH before it is confirmed) rolls
# itself back (nix/deploy/activate.sh); step 4 handles the others, including
# a node lost after its confirmation (it may hold the new generation).
#
# Site data (names, addresses, canary) comes from nixos/site.nix through the
# flake (ROLLOUT_PLAN, a JSON file written by Nix). Environment:
#   FLAKE        flake reference (default: .)
#   SSH_USER     default root
#   POLL_TIMEOUT seconds to wait for one node (default 900)
set -euo pipefail

flake=${FLAKE:-.}
ssh_user=${SSH_USER:-root}
poll_timeout=${POLL_TIMEOUT:-900}
plan=${ROLLOUT_PLAN:?ROLLOUT_PLAN must point at the JSON plan (set by the flake app)}
dry_run=0
if [ "${1:-}" = --dry-run ]; then dry_run=1; shift; fi

canary=$(jq -r '.canary // empty' "$plan")
mapfile -t rest < <(jq -r '.rest[]' "$plan")
if [ "$#" -gt 0 ]; then
  # Deploy only the named nodes; the canary still goes first if named.
  # Refuse any other word: ignoring a misspelt node deployed less than asked
  # (or nothing, with exit 0), and ignoring an option after a node name
  # (`rollout pi4-node-02 --dry-run`) deployed for real.
  for n in "$@"; do
    if [[ " $canary ${rest[*]} " != *" $n "* ]]; then
      echo "rollout: not a node of the rollout plan: $n (usage: rollout [--dry-run] [NODE...]; nodes: $canary ${rest[*]})" >&2
      exit 2
    fi
  done
  selected=" $* "
  [[ $selected == *" $canary "* ]] || canary=""
  filtered=()
  for n in "${rest[@]}"; do [[ $selected == *" $n "* ]] && filtered+=("$n"); done
  rest=("${filtered[@]}")
fi
address() { jq -r --arg n "$1" '.addresses[$n]' "$plan"; }

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
log() { echo "rollout: $*" >&2; }

ssh_() {
  local host=$1
  shift
  ssh -o BatchMode=yes -o ConnectTimeout=10 "$ssh_user@$(address "$host")" "$@"
}

build() {
  local host=$1
  nix build --no-link --print-out-paths \
    "$flake#nixosConfigurations.\"$host\".config.system.build.toplevel" >"$workdir/$host.toplevel"
}

# deploy HOST: copy, activate in a transient unit, poll, confirm. Exit status
# 0 = done, 1 = failed (the node rolled itself back or never came back).
# $workdir/HOST.done marks a node this run upgraded (or confirmed).
deploy() {
  local host=$1 top state deadline
  top=$(cat "$workdir/$host.toplevel")
  log "$host: copying $top"
  # deploy only ever runs as the operand of `if !` or `&&`, where bash
  # ignores `set -e`: check each step here. Unchecked, a failed copy or
  # systemd-run went on to poll the status an earlier activation left on the
  # node ("done: generation N") and counted the node as upgraded; for the
  # canary that meant deploying everything else behind an untested canary.
  if ! nix copy --to "ssh-ng://$ssh_user@$(address "$host")" "$top"; then
    log "$host: FAILED, nix copy failed"
    return 1
  fi
  echo touched >"$workdir/$host.touched"
  # Absolute path: a transient unit does not get a login shell's PATH.
  if ! ssh_ "$host" systemd-run --unit=edgewatch-rollout --collect --quiet \
    /run/current-system/sw/bin/edgewatch-activate --run "$top"; then
    log "$host: FAILED, could not start edgewatch-activate (had it started, it rolls itself back unconfirmed)"
    return 1
  fi
  deadline=$((SECONDS + poll_timeout))
  while [ "$SECONDS" -lt "$deadline" ]; do
    sleep 5
    # Each poll is a new SSH connection: answering proves SSH survived.
    state=$(ssh_ "$host" edgewatch-activate --status 2>/dev/null || echo unreachable)
    case "$state" in
      awaiting-confirmation)
        # Counted as upgraded from the moment it may hold our confirmation:
        # it then keeps the new generation even if its "done" never reaches
        # us (SSH lost, deadline), so roll_back_touched must include it.
        touch "$workdir/$host.done"
        ssh_ "$host" edgewatch-activate --confirm
        ;;
      done:*)
        log "$host: $state"
        return 0
        ;;
      rolled-back:*)
        log "$host: FAILED, $state"
        return 1
        ;;
      *) log "$host: $state" ;;
    esac
  done
  if [ -e "$workdir/$host.done" ]; then
    log "$host: no result within ${poll_timeout}s after its confirmation; it may be upgraded"
  else
    log "$host: no result within ${poll_timeout}s; it rolls itself back when unconfirmed"
  fi
  return 1
}

roll_back_touched() {
  local f host
  for f in "$workdir"/*.done; do
    [ -e "$f" ] || continue
    host=$(basename "$f" .done)
    log "$host: rolling back (the rollout failed)"
    ssh_ "$host" edgewatch-activate --rollback || log "$host: ROLLBACK FAILED, check by hand"
  done
}

all=("${rest[@]}")
[ -n "$canary" ] && all=("$canary" "${all[@]}")
if [ "${#all[@]}" -eq 0 ]; then log "nothing to deploy"; exit 0; fi

log "building ${all[*]}"
for host in "${all[@]}"; do build "$host"; done
if [ "$dry_run" = 1 ]; then
  for host in "${all[@]}"; do log "$host would get $(cat "$workdir/$host.toplevel")"; done
  exit 0
fi

if [ -n "$canary" ]; then
  log "canary: $canary"
  if ! deploy "$canary"; then
    # A canary lost after its confirmation may be upgraded: roll it back.
    roll_back_touched
    log "canary failed; stopping before any other node is touched"
    exit 1
  fi
  touch "$workdir/$canary.done"
fi

pids=()
for host in "${rest[@]}"; do
  (deploy "$host" && touch "$workdir/$host.done") &
  pids+=("$!")
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done

if [ "$failed" = 1 ]; then
  roll_back_touched
  log "rollout FAILED; touched nodes were rolled back"
  exit 1
fi
log "rollout done: ${all[*]}"
