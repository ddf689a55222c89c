#!/usr/bin/env bash
# Every test: formatting, lints, unit and integration tests (real ffmpeg, S3 server, promtool),
# the model tooling's pytest suite (its own pinned venv),
# the unit tests cross-built for the Pi (aarch64) and run under qemu-user, and the Nix/k3s checks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
step() { printf '\n==> %s\n' "$*"; }

step "rustfmt"
cargo fmt --check

step "clippy (deny warnings)"
cargo clippy --locked --all-targets --all-features --quiet -- -D warnings

# Before the Rust tests: its venv holds the onnxruntime library the backend-equivalence test loads.
step "model tooling (Python): pytest"
model/run-tests.sh

step "unit and integration tests"
cargo test --locked --all-features

# The files alone here (the camera, spool and model paths are the node's); the integration
# test `pod_shaped_run` checks them against the world, with the manifest's mounts mapped.
step "shipped configs pass check-config --file-only"
bin="${CARGO_TARGET_DIR:-target}/debug/edgewatch"
for f in k3s/config/*.toml tests/vm/overlay/*.toml; do
  "$bin" check-config --file-only "$f"
done

# The aarch64 leg is a long compile: it runs in the background while the Nix and observability
# checks (which mostly wait on timers) run, and its result is reported at the end.
# EW_SKIP_AARCH64=1 skips it on a developer's machine; CI never sets it.
aarch64_pid=""
if [ "${EW_SKIP_AARCH64:-0}" != 1 ]; then
  step "aarch64-unknown-linux-gnu: cross-build and unit tests under qemu-user (background)"
  aarch64_log=$(mktemp /tmp/edgewatch-aarch64.XXXXXX.log)
  (
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
    export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    # bindgen (v4l) must parse the target's headers, not the host's.
    export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
    cargo test --locked --target aarch64-unknown-linux-gnu --lib --bins
  ) >"$aarch64_log" 2>&1 &
  aarch64_pid=$!
  trap 'kill "$aarch64_pid" 2>/dev/null || true' EXIT
  echo "log: $aarch64_log"
fi

# Every stage runs; a missing script fails the run (bash exits non-zero) instead of skipping.
step "Nix, k3s manifests and configs"
bash .ci/nix-checks.sh

step "Observability: rendered Prometheus/agent configs, rules, dashboards, end to end and outage"
bash .ci/observability-checks.sh

if [ -n "$aarch64_pid" ]; then
  step "aarch64-unknown-linux-gnu: result"
  if wait "$aarch64_pid"; then
    grep -E '^(test result|running|     Running)' "$aarch64_log"
  else
    cat "$aarch64_log"
    echo "aarch64 cross-build or its unit tests failed" >&2
    exit 1
  fi
  trap - EXIT
fi
