#!/usr/bin/env bash
# Installs what building, the demo and the tests need on a fresh Debian 12 machine with rustup.
# Idempotent: each step checks first. Usage: scripts/deps.sh [demo|test]
set -euo pipefail
what=${1:-test}
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first (https://rustup.rs)" >&2; exit 1; }

need_apt=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# libclang: the v4l crate generates its V4L2 bindings with bindgen. cmake and nasm: the turbojpeg
# crate builds its bundled libjpeg-turbo (with its SIMD code) for the scaled inference decode.
pkgs=(libclang1-14 libclang-dev pkg-config nasm cmake)
if [ "$what" = test ]; then
  # ffmpeg/ffprobe make and check fixture videos; promtool checks metrics; the aarch64
  # toolchain and qemu-user run the unit tests for the Pi target; nix-bin checks the Nix files.
  # bubblewrap runs the pod-shaped test's containers with a read-only root and their mounts.
  pkgs+=(openssl ffmpeg prometheus gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static nix-bin python3-venv bubblewrap)
fi
for p in "${pkgs[@]}"; do have "$p" || need_apt+=("$p"); done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ "$what" = test ]; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
  rustup target list --installed | grep -q aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
  # A real S3-compatible server that checks SigV4 signatures, for the archive and model tests.
  # 0.14.1 is the newest release that builds with the Rust toolchain on these machines.
  # A real SMTP server (STARTTLS, implicit TLS, AUTH) for the watchdog tests.
  venv=/opt/edgewatch-test-venv
  if ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    echo "deps: python venv $venv with aiosmtpd"
    $SUDO python3 -m venv "$venv"
    $SUDO "$venv/bin/pip" install --quiet --disable-pip-version-check aiosmtpd==1.4.6
  fi
  if ! cargo install --list | grep -q '^s3s-fs v0.14.1'; then
    echo "deps: cargo install s3s-fs@0.14.1"
    cargo install --quiet --locked s3s-fs@0.14.1 --features binary
  fi
fi
