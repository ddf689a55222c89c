#!/usr/bin/env bash
# Every test: formatting, lints, unit and integration tests (real ffmpeg, S3 server, promtool),
# the unit tests cross-built for the Pi (aarch64) and run under qemu-user, and the Nix/k3s checks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
step() { printf '\n==> %s\n' "$*"; }

step "rustfmt"
cargo fmt --check

step "clippy (deny warnings)"
cargo clippy --locked --all-targets --all-features --quiet -- -D warnings

step "unit and integration tests"
cargo test --locked --all-features

step "shipped configs pass check-config"
bin="${CARGO_TARGET_DIR:-target}/debug/edgewatch"
for f in k3s/config/*.toml tests/vm/overlay/*.toml; do
  "$bin" check-config "$f"
done

# EW_SKIP_AARCH64=1 skips this slow step on a developer's machine; CI never sets it.
if [ "${EW_SKIP_AARCH64:-0}" != 1 ]; then
step "aarch64-unknown-linux-gnu: cross-build and unit tests under qemu-user"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# bindgen (v4l) must parse the target's headers, not the host's.
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
cargo test --locked --target aarch64-unknown-linux-gnu --lib --bins
fi

if [ -f .ci/nix-checks.sh ]; then
  step "Nix, k3s manifests and configs"
  bash .ci/nix-checks.sh
fi

if [ -f .ci/observability-checks.sh ]; then
  step "Observability: rendered Prometheus/agent configs, rules, dashboards, end to end and outage"
  bash .ci/observability-checks.sh
fi
