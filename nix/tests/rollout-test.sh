# Test of nix/deploy/rollout.sh, the deploying side of `nix run .#rollout`
# (the node side, activate.sh and health-gate.sh, runs in the VM test
# vm-broken-deploy-rollback). rollout.sh runs against stub `nix`, `ssh` and
# `sleep` first on PATH and a ROLLOUT_PLAN file of four camera nodes:
#
#   nix build  prints a fake toplevel per node (fails for $FAIL_BUILD)
#   nix copy   records which toplevel reached which node (fails for $FAIL_COPY)
#   ssh        a model of edgewatch-activate on each node: --run (through
#              systemd-run) starts an activation that --status walks through
#              switching, gating, awaiting-confirmation; --confirm makes it
#              "done: generation 42"; --rollback goes back to generation 41.
#              $FAIL_GATE's gate fails with $GATE_MSG (the node rolls itself
#              back); $LOST stops answering after --run, $LOST_AFTER_CONFIRM
#              after its confirmation (so it keeps generation 42); $FAIL_RUN's
#              systemd-run fails. Nodes in $BARRIER stay "gating" until every
#              one of them has been started, so the rest only get past their
#              gate when they really are deployed in parallel. Before a run
#              every node says "done: generation 41", as a node does after an
#              earlier rollout since its last boot.
#   sleep      a short real sleep, so the 5 s polls take milliseconds
#
# Every stub call is appended, with a timestamp, as one line to the case's
# log; the line number is its sequence number (appends of one short line are
# atomic), which the checks compare.
#
# Cases: all healthy; the canary fails its gate; a later node fails its gate;
# a later node loses SSH, before or after its confirmation, and so does the
# canary after its own; `nix copy` fails (later node, canary); systemd-run
# fails; --dry-run; a build fails; named nodes; a misplaced --dry-run or an
# unknown node name; a plan without canary.
# Prerequisites: bash, coreutils, grep, sed, jq (rollout.sh itself uses jq).
# Run: bash nix/tests/rollout-test.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
script="$here/../deploy/rollout.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
bad() { echo "FAIL: $1"; failed=$((failed + 1)); case_failed=1; }
# After a case with a failed check: rollout.sh's exit status and stderr, and
# the stub calls (sequence number, time, call).
dump() {
  [ "${case_failed:-0}" = 1 ] || return 0
  echo "    $case: rollout.sh exit status $rc; its stderr:"
  sed 's/^/      /' "$case_dir/err"
  echo "    $case: stub calls:"
  cat -n "$log" | sed 's/^/    /'
  case_failed=0
}
check() { # check DESCRIPTION COMMAND...: ok if COMMAND succeeds
  local what=$1 detail
  shift
  if detail=$("$@" 2>&1); then
    ok "$case: $what"
  else
    bad "$case: $what"
    if [ -n "$detail" ]; then echo "$detail"; fi
  fi
}

if ! command -v jq >/dev/null; then
  echo "rollout-test: jq is required (apt-get install jq)" >&2
  exit 1
fi

nodes=(pi4-node-01 pi4-node-02 pi4-node-03 pi4-node-04)
cat >"$work/plan.json" <<'JSON'
{
  "canary": "pi4-node-01",
  "rest": ["pi4-node-02", "pi4-node-03", "pi4-node-04"],
  "addresses": {
    "pi4-node-01": "192.168.50.11", "pi4-node-02": "192.168.50.12",
    "pi4-node-03": "192.168.50.13", "pi4-node-04": "192.168.50.14",
    "k3s-server": "192.168.50.2", "monitor": "192.168.50.3"
  }
}
JSON
jq '.canary = null | .rest = ["pi4-node-01", "pi4-node-02", "pi4-node-03", "pi4-node-04"]' \
  "$work/plan.json" >"$work/plan-no-canary.json"

# ---------------------------------------------------------------- stubs
# Absolute interpreter paths: a Nix build sandbox has no /usr/bin/env.
mkdir -p "$work/bin"
printf '#!%s\nexec %s 0.02\n' "$BASH" "$(command -v sleep)" >"$work/bin/sleep"

{ echo "#!$BASH"; cat <<'X'; } >"$work/bin/nix"
# nix build --no-link --print-out-paths FLAKE#nixosConfigurations."HOST".config.system.build.toplevel
# nix copy --to ssh-ng://USER@ADDR TOPLEVEL
set -euo pipefail
record() { printf '%s %s\n' "$(date +%s.%N)" "$*" >>"$STUB_LOG"; }
node_at() { jq -r --arg a "$1" '.addresses | to_entries[] | select(.value == $a) | .key' "$STUB_PLAN"; }
case "${1:-}" in
  build)
    attr=${!#}
    node=$(sed -nE 's/^.*#nixosConfigurations\."([^"]+)"\.config\.system\.build\.toplevel$/\1/p' <<<"$attr")
    record "nix build ${node:-?} ${*:2}"
    if [ -z "$node" ] || [ "$node" = "${FAIL_BUILD:-}" ]; then
      echo "error: builder for '/nix/store/...-nixos-system-$node.drv' failed with exit code 1" >&2
      exit 1
    fi
    echo "/nix/store/$(printf %s "$node" | md5sum | cut -c1-32)-nixos-system-$node-25.05"
    ;;
  copy)
    [ "$2" = --to ] || { record "nix copy ? $*"; exit 1; }
    dest=${3#ssh-ng://}
    node=$(node_at "${dest#*@}")
    record "nix copy $node $dest $4"
    if [ "$node" = "${FAIL_COPY:-}" ]; then
      echo "error: cannot add path '$4' to the store of '$3': No space left on device" >&2
      exit 1
    fi
    echo "$4" >"$STUB_DIR/$node.copied"
    ;;
  *)
    record "nix ? $*"
    exit 1
    ;;
esac
X

{ echo "#!$BASH"; cat <<'X'; } >"$work/bin/ssh"
# ssh [-o OPTION]... USER@ADDR COMMAND...: edgewatch-activate on a fake node.
set -euo pipefail
record() { printf '%s %s\n' "$(date +%s.%N)" "$*" >>"$STUB_LOG"; }
while [ "${1:-}" = -o ]; do shift 2; done
dest=$1
shift
node=$(jq -r --arg a "${dest#*@}" '.addresses | to_entries[] | select(.value == $a) | .key' "$STUB_PLAN")
n=$STUB_DIR/$node
cmd="$*"
set_status() { echo "$1" >"$n.status"; }
status=$(cat "$n.status")
if [ "$node" = "${LOST_AFTER_CONFIRM:-}" ] && [ -e "$n.confirmed" ]; then
  record "ssh $node $dest $* -> connection timed out"
  exit 255
fi
case "$cmd" in
  "systemd-run --unit=edgewatch-rollout --collect --quiet /run/current-system/sw/bin/edgewatch-activate --run "*)
    top=${cmd##* }
    if [ "$node" = "${FAIL_RUN:-}" ]; then
      record "ssh $node $dest $cmd -> connection refused"
      echo "ssh: connect to host ${dest#*@} port 22: Connection refused" >&2
      exit 255
    fi
    record "ssh $node $dest $cmd"
    # systemd-run returns once the unit started; edgewatch-activate on a path
    # that is not there exits 2 before writing any status.
    [ "$(cat "$n.copied" 2>/dev/null)" = "$top" ] || exit 0
    touch "$n.started"
    set_status "switching to $top"
    ;;
  "edgewatch-activate --status")
    if [ "$node" = "${LOST:-}" ] && [ -e "$n.started" ]; then
      record "ssh $node $dest $cmd -> connection timed out"
      exit 255
    fi
    case "$status" in
      switching*) set_status gating ;;
      gating)
        ready=1
        for b in ${BARRIER:-}; do
          if [ "$b" = "$node" ]; then
            for o in ${BARRIER:-}; do [ -e "$STUB_DIR/$o.started" ] || ready=0; done
          fi
        done
        if [ "$ready" = 1 ]; then
          if [ "$node" = "${FAIL_GATE:-}" ]; then
            set_status "rolled-back: health gate failed: $GATE_MSG"
          else
            set_status awaiting-confirmation
          fi
        fi
        ;;
    esac
    record "ssh $node $dest $cmd -> $(cat "$n.status")"
    cat "$n.status"
    ;;
  "edgewatch-activate --confirm")
    record "ssh $node $dest $cmd"
    if [ "$status" = awaiting-confirmation ]; then
      set_status "done: generation 42"
      echo 42 >"$n.generation"
      touch "$n.confirmed"
    fi
    ;;
  "edgewatch-activate --rollback")
    record "ssh $node $dest $cmd"
    set_status "rolled-back: requested by the deployer"
    echo 41 >"$n.generation"
    ;;
  *)
    record "ssh $node $dest $cmd -> unexpected command"
    exit 127
    ;;
esac
X
chmod +x "$work/bin/"*

# ---------------------------------------------------------------- helpers
# run CASE [ARGS...]: rollout.sh ARGS with the stubs, scenario variables
# (FAIL_BUILD, FAIL_COPY, FAIL_RUN, FAIL_GATE, GATE_MSG, LOST, LOST_AFTER_CONFIRM,
# BARRIER, PLAN, POLL_TIMEOUT) from the caller's environment. Sets rc, log,
# case_dir.
run() {
  dump
  case=$1
  shift
  case_dir=$work/$case
  mkdir -p "$case_dir/nodes"
  log=$case_dir/log
  : >"$log"
  local node
  for node in "${nodes[@]}"; do
    echo "done: generation 41" >"$case_dir/nodes/$node.status"
    echo 41 >"$case_dir/nodes/$node.generation"
  done
  rc=0
  PATH="$work/bin:$PATH" STUB_LOG=$log STUB_DIR=$case_dir/nodes STUB_PLAN=${PLAN:-$work/plan.json} \
    ROLLOUT_PLAN=${PLAN:-$work/plan.json} POLL_TIMEOUT=${POLL_TIMEOUT:-30} FLAKE=/srv/edgewatch \
    BARRIER=${BARRIER-pi4-node-02 pi4-node-03 pi4-node-04} \
    bash "$script" "$@" >"$case_dir/out" 2>"$case_dir/err" || rc=$?
}
# Sequence numbers (log line numbers) of the first / last call matching an
# extended regex; 1000000 / 0 when none does. count: how many match.
first() { local n; n=$({ grep -n -m1 -E -- "$1" "$log" || true; } | cut -d: -f1); echo "${n:-1000000}"; }
last() { local n; n=$({ grep -n -E -- "$1" "$log" || true; } | tail -n1 | cut -d: -f1); echo "${n:-0}"; }
count() { grep -c -E -- "$1" "$log" || true; }
before() { [ "$(last "$1")" -lt "$(first "$2")" ]; } # every call matching $1 precedes every call matching $2
none() { [ "$(count "$1")" = 0 ]; }
said() { grep -qF -- "$1" "$case_dir/err"; }
generations() { # generations NODE...: "node=gen ..." of the fake nodes
  local node s=""
  for node in "$@"; do s+="$node=$(cat "$case_dir/nodes/$node.generation") "; done
  echo "${s% }"
}
steps() { # steps NODE: what happened to NODE, in order, repeats collapsed
  sed -nE -e "s/^[0-9.]+ nix copy $1 .*/copy/p" -e "s/^[0-9.]+ ssh $1 .* --run .*/run/p" \
    -e "s/^[0-9.]+ ssh $1 .* --status -> (.*)/\\1/p" -e "s/^[0-9.]+ ssh $1 .* --confirm\$/confirm/p" "$log" | uniq | tr '\n' ,
}
is() { [ "$1" = "$2" ] || { echo "    got '$1', want '$2'"; return 1; }; }

started_before_first_done() { # started_before_first_done NODES_REGEX: activations begun before the first "done"
  head -n "$(($(first "ssh $1 .* --status -> done:") - 1))" "$log" | grep -cE "ssh $1 .* systemd-run " || true
}
activated_with_built_toplevel() {
  local n top
  for n in "${nodes[@]}"; do
    top=$(sed -nE "s/^[0-9.]+ nix copy $n [^ ]+ //p" "$log")
    [[ $top == /nix/store/*-nixos-system-$n-25.05 ]] || return 1
    grep -qE "ssh $n root@[0-9.]+ systemd-run --unit=edgewatch-rollout --collect --quiet /run/current-system/sw/bin/edgewatch-activate --run $top\$" "$log" || return 1
  done
}

touch_='^[0-9.]+ (nix copy|ssh) '    # a call that reaches a node
rest_='pi4-node-0[234]'
gate_msg="UNHEALTHY after 300s: preflight failed: spool (FAIL spool: 120 MiB free on /var/lib/edgewatch/spool, need 512. Fix: free space or move the spool)"

# ---------------------------------------------------------------- 1. all healthy
run healthy
check "exit status 0" is "$rc" 0
check "every node's system built (4 builds)" is "$(count '^[0-9.]+ nix build ')" 4
check "builds use FLAKE#nixosConfigurations.\"HOST\".config.system.build.toplevel" \
  is "$(count 'nix build (pi4-node-0[1-4]) --no-link --print-out-paths /srv/edgewatch#nixosConfigurations\."\1"\.config\.system\.build\.toplevel$')" 4
check "every build before anything reaches a node" before ' nix build ' "$touch_"
check "canary: copied, activated, gated, confirmed, done, in that order" is "$(steps pi4-node-01)" \
  "copy,run,gating,awaiting-confirmation,confirm,done: generation 42,"
check "canary done (gate passed, confirmed) before any other node is touched" \
  before 'ssh pi4-node-01 .* --status -> done:' "$touch_$rest_ "
check "each node activated through systemd-run with the toplevel built for it" activated_with_built_toplevel
check "the rest all started before any of them finished (parallel)" \
  is "$(started_before_first_done "$rest_")" 3
check "every node confirmed once, over its own ssh call" is "$(count 'ssh pi4-node-0[1-4] root@[0-9.]+ edgewatch-activate --confirm$')" 4
check "no rollback" none ' --rollback'
check "every node on the new generation" is "$(generations "${nodes[@]}")" \
  "pi4-node-01=42 pi4-node-02=42 pi4-node-03=42 pi4-node-04=42"
check "reports rollout done" said "rollout: rollout done: pi4-node-01 pi4-node-02 pi4-node-03 pi4-node-04"

# ---------------------------------------------------------------- 2. canary fails its gate
FAIL_GATE=pi4-node-01 GATE_MSG=$gate_msg run canary-gate-fails
check "exit status non-zero" test "$rc" -ne 0
check "names the canary and its failed check" said "rollout: pi4-node-01: FAILED, rolled-back: health gate failed: $gate_msg"
check "says it stops" said "canary failed; stopping before any other node is touched"
check "no other node touched" none "$touch_$rest_ "
check "the canary is not confirmed" none 'pi4-node-01 .* --confirm'
check "the canary is back on its generation, the others never left theirs" is "$(generations "${nodes[@]}")" \
  "pi4-node-01=41 pi4-node-02=41 pi4-node-03=41 pi4-node-04=41"

# ---------------------------------------------------------------- 3. a later node fails its gate
FAIL_GATE=pi4-node-03 GATE_MSG=$gate_msg run rest-gate-fails
check "exit status non-zero" test "$rc" -ne 0
check "names the failed node and its failed check" said "rollout: pi4-node-03: FAILED, rolled-back: health gate failed: $gate_msg"
check "says the rollout failed" said "rollout: rollout FAILED; touched nodes were rolled back"
check "the failed node is not confirmed" none 'pi4-node-03 .* --confirm'
check "every upgraded node rolled back, canary included, each once" is \
  "$(grep -oE 'ssh pi4-node-0[0-9] .* --rollback$' "$log" | cut -d' ' -f2 | sort | tr '\n' ' ')" "pi4-node-01 pi4-node-02 pi4-node-04 "
check "rollbacks only after every node's deploy ended" before "--status -> (done|rolled-back: health)" ' --rollback'
check "no node left on the new generation" is "$(generations "${nodes[@]}")" \
  "pi4-node-01=41 pi4-node-02=41 pi4-node-03=41 pi4-node-04=41"

# ---------------------------------------------------------------- 3b. a later node loses SSH
# POLL_TIMEOUT: the lost node times out; the others need well under a second
# here (the other cases allow 30 s, as a broken parallel deploy waits that long).
LOST=pi4-node-02 POLL_TIMEOUT=6 run rest-ssh-lost
check "exit status non-zero" test "$rc" -ne 0
check "names the node and the timeout" said "rollout: pi4-node-02: no result within 6s; it rolls itself back when unconfirmed"
check "the lost node is not confirmed" none 'pi4-node-02 .* --confirm'
check "every other upgraded node rolled back, canary included" is \
  "$(grep -oE 'ssh pi4-node-0[0-9] .* --rollback$' "$log" | cut -d' ' -f2 | sort | tr '\n' ' ')" "pi4-node-01 pi4-node-03 pi4-node-04 "
check "no node left on the new generation" is "$(generations "${nodes[@]}")" \
  "pi4-node-01=41 pi4-node-02=41 pi4-node-03=41 pi4-node-04=41"

# Confirmed, then SSH lost before the deployer saw "done": the node is on the
# new generation, so it is one of the upgraded nodes to roll back (here the
# rollback cannot reach it either, which must be said).
LOST_AFTER_CONFIRM=pi4-node-04 POLL_TIMEOUT=6 run rest-ssh-lost-after-confirm
check "exit status non-zero" test "$rc" -ne 0
check "names the node as possibly upgraded" said "rollout: pi4-node-04: no result within 6s after its confirmation; it may be upgraded"
check "every upgraded node rollback tried, canary and the confirmed node included" is \
  "$(grep -oE 'ssh pi4-node-0[0-9] .* --rollback( ->.*)?$' "$log" | cut -d' ' -f2 | sort | tr '\n' ' ')" "pi4-node-01 pi4-node-02 pi4-node-03 pi4-node-04 "
check "says the confirmed node could not be rolled back" said "rollout: pi4-node-04: ROLLBACK FAILED, check by hand"
check "only the unreachable node left on the new generation" is "$(generations "${nodes[@]}")" \
  "pi4-node-01=41 pi4-node-02=41 pi4-node-03=41 pi4-node-04=42"

LOST_AFTER_CONFIRM=pi4-node-01 POLL_TIMEOUT=6 run canary-ssh-lost-after-confirm
check "exit status non-zero" test "$rc" -ne 0
check "names the canary as possibly upgraded" said "rollout: pi4-node-01: no result within 6s after its confirmation; it may be upgraded"
check "the canary's rollback is tried and its failure said" said "rollout: pi4-node-01: ROLLBACK FAILED, check by hand"
check "no other node touched" none "$touch_$rest_ "

# ---------------------------------------------------------------- 3c. nix copy fails on a later node
# The node still says "done: generation 41" from an earlier rollout: that
# must not pass for success.
FAIL_COPY=pi4-node-03 BARRIER="" run rest-copy-fails
check "exit status non-zero" test "$rc" -ne 0
check "names the node whose copy failed" said "rollout: pi4-node-03: FAILED, nix copy failed"
check "the node is not activated" none 'ssh pi4-node-03 '
check "every upgraded node rolled back, canary included" is \
  "$(grep -oE 'ssh pi4-node-0[0-9] .* --rollback$' "$log" | cut -d' ' -f2 | sort | tr '\n' ' ')" "pi4-node-01 pi4-node-02 pi4-node-04 "
check "no node left on the new generation" is "$(generations "${nodes[@]}")" \
  "pi4-node-01=41 pi4-node-02=41 pi4-node-03=41 pi4-node-04=41"

# ---------------------------------------------------------------- 3d. nix copy fails on the canary
FAIL_COPY=pi4-node-01 run canary-copy-fails
check "exit status non-zero" test "$rc" -ne 0
check "names the canary" said "rollout: pi4-node-01: FAILED, nix copy failed"
check "the canary is not activated" none 'ssh pi4-node-01 '
check "no other node touched" none "$touch_$rest_ "

# ---------------------------------------------------------------- 3e. systemd-run fails on a later node
FAIL_RUN=pi4-node-04 BARRIER="" run rest-run-fails
check "exit status non-zero" test "$rc" -ne 0
check "names the node whose activation did not start" said "rollout: pi4-node-04: FAILED, could not start edgewatch-activate"
check "its stale status is not polled as success" none 'ssh pi4-node-04 .* --status'
check "every upgraded node rolled back, canary included" is \
  "$(grep -oE 'ssh pi4-node-0[0-9] .* --rollback$' "$log" | cut -d' ' -f2 | sort | tr '\n' ' ')" "pi4-node-01 pi4-node-02 pi4-node-03 "

# ---------------------------------------------------------------- 4. --dry-run
run dry-run --dry-run
check "exit status 0" is "$rc" 0
check "every node's system built" is "$(count '^[0-9.]+ nix build ')" 4
check "nothing reaches any node" none "$touch_"
check "names what each node would get" is "$(grep -cE '^rollout: pi4-node-0[1-4] would get /nix/store/[0-9a-f]{32}-nixos-system-pi4-node-0[1-4]-25.05$' "$case_dir/err")" 4

# ---------------------------------------------------------------- 5. a build fails
FAIL_BUILD=pi4-node-03 run build-fails
check "exit status non-zero" test "$rc" -ne 0
check "nothing reaches any node" none "$touch_"

# ---------------------------------------------------------------- 6. named nodes
BARRIER="" run named-one pi4-node-03
check "exit status 0" is "$rc" 0
check "only the named node built" is "$(grep -oE 'nix build [^ ]+' "$log" | tr '\n' ' ')" "nix build pi4-node-03 "
check "only the named node touched (not the canary)" none "$touch_(pi4-node-0[124]) "
check "it is on the new generation, the others untouched" is "$(generations "${nodes[@]}")" \
  "pi4-node-01=41 pi4-node-02=41 pi4-node-03=42 pi4-node-04=41"

BARRIER="" run named-canary pi4-node-04 pi4-node-01
check "exit status 0" is "$rc" 0
check "a named canary still goes first" before 'ssh pi4-node-01 .* --status -> done:' "${touch_}pi4-node-04 "
check "the unnamed nodes are not touched" none "$touch_(pi4-node-0[23]) "

# A misplaced option or a misspelt node must not silently deploy less (or,
# for `NODE --dry-run`, deploy for real).
BARRIER="" run dry-run-after-node pi4-node-02 --dry-run
check "NODE --dry-run refused (exit 2)" is "$rc" 2
check "NODE --dry-run touches nothing" none "$touch_"
check "NODE --dry-run says why" said "rollout: not a node of the rollout plan: --dry-run"
BARRIER="" run unknown-node pi4-node-2
check "an unknown node refused (exit 2)" is "$rc" 2
check "an unknown node: nothing built or touched" none .
check "says which name" said "rollout: not a node of the rollout plan: pi4-node-2"

# ---------------------------------------------------------------- 7. no canary in the plan
PLAN=$work/plan-no-canary.json BARRIER="${nodes[*]}" run no-canary
check "exit status 0" is "$rc" 0
check "every build before anything reaches a node" before ' nix build ' "$touch_"
check "all nodes started before any finished" is "$(started_before_first_done 'pi4-node-0[1-4]')" 4
check "every node on the new generation" is "$(generations "${nodes[@]}")" \
  "pi4-node-01=42 pi4-node-02=42 pi4-node-03=42 pi4-node-04=42"

dump
echo "rollout-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
