#!/usr/bin/env bash
# The demo: builds edgewatch and plays the bundled video through the real pipeline.
# No network and no configuration needed. Output lands in ./demo-out.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh demo
cargo build --release --locked --quiet
exec target/release/edgewatch demo --out demo-out "$@"
