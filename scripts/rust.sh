#!/usr/bin/env bash
# Makes sure a Rust toolchain of at least the workspace's rust-version is on PATH: installs
# rustup when there is no cargo, or updates the stable toolchain when the cargo found is
# older (a distro's cargo, e.g. Debian's 1.63, cannot build the dependencies).
set -euo pipefail
need="${1:-1.89.0}"
export PATH="$HOME/.cargo/bin:$PATH"
have="$(rustc --version 2>/dev/null | awk '{print $2}')"
if [ -n "$have" ] && [ "$(printf '%s\n' "$need" "$have" | sort -V | head -1)" = "$need" ]; then
  exit 0
fi
if command -v rustup >/dev/null; then
  echo "rust.sh: rustc ${have:-none} is older than $need: updating the stable toolchain"
  rustup toolchain install stable --profile minimal
  rustup default stable
else
  echo "rust.sh: rustc ${have:-none} is older than $need: installing Rust with rustup"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
