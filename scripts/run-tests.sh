#!/usr/bin/env bash
# Runs the whole test suite: nextest when installed (per-test processes, timeouts from
# .config/nextest.toml), plain cargo test otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast
else
  echo "cargo-nextest not found; running cargo test (install it with: cargo install cargo-nextest --locked)"
  exec cargo test --workspace --no-fail-fast
fi
