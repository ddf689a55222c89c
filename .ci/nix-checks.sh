#!/usr/bin/env bash
# The Nix, Kubernetes and deploy-script checks that can run without nixpkgs
# (nothing in nixpkgs is reachable from CI, so no `nix flake check`; see
# nix/README.md). Installs what it needs on a fresh Debian 12 machine, runs
# every check, and ends with "nix-checks: N passed, M failed".
#   bash .ci/nix-checks.sh
set -euo pipefail

cd "$(dirname "$0")/.."

DEADNIX_VERSION=1.3.1
NIXPKGS_FMT_VERSION=1.3.0
CHECKOV_VERSION=3.3.30
KUBERNETES_VALIDATE_VERSION=1.37.0
# The Kubernetes minor of the k3s the profiles name (services.k3s.package =
# pkgs.k3s_1_34 in nixos/profiles/{node,server}.nix).
KUBERNETES_VERSION=1.34.0
tools=${EW_CI_TOOLS:-/opt/edgewatch-ci}

log() { echo "nix-checks: $*"; }

# ---------------------------------------------------------------- install
install_tools() {
  local apt_pkgs=()
  command -v nix-instantiate >/dev/null || apt_pkgs+=(nix-bin)
  command -v shellcheck >/dev/null || apt_pkgs+=(shellcheck)
  command -v python3 >/dev/null || apt_pkgs+=(python3 python3-venv)
  command -v jq >/dev/null || apt_pkgs+=(jq) # nix/deploy/rollout.sh, run by nix/tests/rollout-test.sh
  if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    log "apt-get install ${apt_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
  fi

  export PATH="$HOME/.cargo/bin:$PATH"
  if [ "$(deadnix --version 2>/dev/null)" != "deadnix $DEADNIX_VERSION" ]; then
    log "cargo install deadnix $DEADNIX_VERSION (first time: a few minutes)"
    # Its own temporary target dir: the shared one may be locked by the background aarch64 build.
    env -u CARGO_TARGET_DIR cargo install --quiet --locked "deadnix@$DEADNIX_VERSION"
  fi
  if [ "$(nixpkgs-fmt --version 2>/dev/null)" != "nixpkgs-fmt $NIXPKGS_FMT_VERSION" ]; then
    log "cargo install nixpkgs-fmt $NIXPKGS_FMT_VERSION (first time: a few minutes)"
    env -u CARGO_TARGET_DIR cargo install --quiet --locked "nixpkgs-fmt@$NIXPKGS_FMT_VERSION"
  fi

  # Separate virtualenvs: checkov pins many libraries.
  if [ "$("$tools/checkov/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
    log "pip install checkov $CHECKOV_VERSION"
    python3 -m venv "$tools/checkov"
    "$tools/checkov/bin/pip" install --quiet "checkov==$CHECKOV_VERSION"
  fi
  local kv_version
  kv_version=$("$tools/kv/bin/pip" show kubernetes-validate 2>/dev/null || true)
  if [[ $kv_version != *"Version: $KUBERNETES_VALIDATE_VERSION"* ]]; then
    log "pip install kubernetes-validate $KUBERNETES_VALIDATE_VERSION"
    python3 -m venv "$tools/kv"
    "$tools/kv/bin/pip" install --quiet "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  fi

  # kubectl (with its built-in kustomize) is preinstalled on the project's
  # machines; Debian 12 does not package it.
  if ! command -v kubectl >/dev/null; then
    echo "nix-checks: kubectl not found; install kubectl >= 1.27 (it embeds kustomize)" >&2
    exit 1
  fi
}

# ---------------------------------------------------------------- checks
passed=0
failed=0
failures=()
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

check() { # check NAME COMMAND...
  local name=$1
  shift
  local started=$SECONDS
  if "$@" >"$work/log" 2>&1; then
    passed=$((passed + 1))
    echo "PASS $name ($((SECONDS - started))s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "FAIL $name"
    sed 's/^/    /' "$work/log" | tail -n 40
  fi
}

nix_files() { git ls-files --cached --others --exclude-standard -- '*.nix' | while read -r f; do [ -e "$f" ] && echo "$f"; done; }
shell_files() { echo .ci/nix-checks.sh nix/deploy/*.sh nixos/hardware/*.sh nixos/modules/*.sh nix/tests/*.sh; }

parse_all() {
  local f rc=0
  for f in $(nix_files); do
    nix-instantiate --parse "$f" >/dev/null || { echo "parse error: $f"; rc=1; }
  done
  return "$rc"
}

golden() { nix-instantiate --eval --strict nix/tests; }

# flake.lock must be well-formed and lock exactly the inputs flake.nix declares.
flake_lock() {
  python3 - <<'PY'
import json, re, sys
lock = json.load(open("flake.lock"))
assert lock["version"] == 7, "lock version"
declared = set(re.findall(r'^\s{4}([a-z-]+)\.url\s*=', open("flake.nix").read(), re.M))
locked = set(lock["nodes"][lock["root"]]["inputs"])
assert declared == locked, f"flake.nix inputs {sorted(declared)} != flake.lock root inputs {sorted(locked)}"
for name in locked:
    node = lock["nodes"][name]["locked"]
    assert re.fullmatch(r"[0-9a-f]{40}", node["rev"]), f"{name}: rev"
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", node["narHash"]), f"{name}: narHash"
    assert isinstance(node["lastModified"], int), f"{name}: lastModified"
print("flake.lock locks", sorted(locked))
PY
}

# Only the keys Hydra's validateDeclarativeJobset accepts.
hydra_spec() {
  python3 - <<'PY'
import json
allowed = {"enabled", "hidden", "type", "flake", "description", "nixexprinput", "nixexprpath",
           "checkinterval", "schedulingshares", "enableemail", "enable_dynamic_run_command",
           "emailoverride", "keepnr", "inputs"}
spec = json.load(open("hydra/spec.json"))
for name, js in spec.items():
    extra = set(js) - allowed
    assert not extra, f"{name}: unknown keys {extra}"
    assert js["type"] == 1 and js["flake"], f"{name}: not a flake jobset"
print("jobsets:", ", ".join(spec))
PY
}

render() { # render OUT [OVERLAY_DIR]: lay out base (+ overlay) as nix/packages/manifests.nix does
  local out=$1 overlay=${2:-} dir
  dir=$(mktemp -d -p "$work")
  cp -r k3s "$dir/base"
  local top=base
  if [ -n "$overlay" ]; then cp -r "$overlay" "$dir/overlay"; top=overlay; fi
  kubectl kustomize "$dir/$top" >"$out"
  grep -c '^kind:' "$out"
}

validate() { "$tools/kv/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$@"; }

# Negative control: the offline validator must reject a misspelt field and a
# wrong type, or a green result above would mean nothing.
validator_rejects_bad_input() {
  cat >"$work/bad.yaml" <<'YAML'
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: bad}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: c
          image: x
          imagePullPolicy: Never
          resources: {limits: {memory: 64Mi}}
          securityContext: {readOnlyRootFilesystm: true}
          ports: [{containerPort: "not-a-number"}]
YAML
  if validate "$work/bad.yaml"; then echo "validator accepted an invalid DaemonSet"; return 1; fi
  echo "validator rejected the invalid DaemonSet, as it must"
}

checkov_() {
  "$tools/checkov/bin/checkov" --config-file k3s/.checkov.yaml -f "$1"
}

install_tools
log "tools: $(nix-instantiate --version), deadnix $DEADNIX_VERSION, nixpkgs-fmt $NIXPKGS_FMT_VERSION, checkov $CHECKOV_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION (schemas $KUBERNETES_VERSION), $(kubectl version --client 2>/dev/null | head -n 1)"

# shellcheck disable=SC2046
{
  check "nix-instantiate --parse (every .nix file)" parse_all
  check "golden tests of nix/lib (nix-instantiate --eval --strict nix/tests)" golden
  check "firmware config.txt sync against files" bash nix/tests/firmware-config-sync-test.sh
  check "Pi throttling flags script against a fake sysfs" bash nix/tests/pi-throttled-test.sh
  check "node preflight against a fake sysfs/procfs/dev tree" bash nix/tests/node-preflight-test.sh
  check "rollout.sh against stub nix and ssh: builds first, canary, the rest in parallel, upgraded nodes rolled back" bash nix/tests/rollout-test.sh
  check "deadnix --fail" deadnix --fail $(nix_files)
  check "nixpkgs-fmt --check" nixpkgs-fmt --check $(nix_files)
  check "shellcheck" shellcheck -s bash $(shell_files)
  check "flake.lock matches flake.nix" flake_lock
  check "no placeholder hash (lib.fake*, all-zero) in *.nix and flake.lock" python3 .ci/nix-hashes.py
  check "placeholder-hash check reports each placeholder form" python3 .ci/nix-hashes.py --self-test
  check "every nixpkgs option set has a row in nix/OPTIONS.md" python3 .ci/nix-option-ledger.py
  check "option ledger check fails on fake options (negative controls)" python3 .ci/nix-option-ledger.py --self-test
  check "VM test scripts call only test-driver methods that exist" python3 .ci/vm-test-calls.py
  check "VM test-call check rejects an unknown method" python3 .ci/vm-test-calls.py --self-test
  check "promises ledger: every claim in the docs has a test that exists" python3 .ci/promises-check.py
  check "promises ledger check catches each kind of gap (self-test)" python3 .ci/promises-check.py --self-test
  check "hydra/spec.json keys" hydra_spec
  check "kustomize k3s/ (base)" render "$work/rendered.yaml"
  check "kustomize k3s/ + tests/vm/overlay" render "$work/rendered-vm.yaml" tests/vm/overlay
  check "schema validation, base (kubernetes-validate --strict, k8s $KUBERNETES_VERSION)" validate "$work/rendered.yaml"
  check "schema validation, VM-test overlay" validate "$work/rendered-vm.yaml"
  check "schema validator rejects an invalid manifest" validator_rejects_bad_input
  check "checkov (k3s/.checkov.yaml), base" checkov_ "$work/rendered.yaml"
  check "checkov, VM-test overlay" checkov_ "$work/rendered-vm.yaml"
}

if [ "$failed" -gt 0 ]; then log "failed: ${failures[*]}"; fi
echo "nix-checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
