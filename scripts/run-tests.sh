#!/usr/bin/env bash
# Runs the whole test suite: nextest when installed (per-test processes, timeouts from
# .config/nextest.toml), plain cargo test otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast
else
  echo "cargo-nextest not found; running cargo test (install it with: cargo install cargo-nextest --locked)"
  # One test at a time: the tests run in one process, whose metrics they all count in, and
  # some compare a counter before and after what they do.
  exec cargo test --workspace --no-fail-fast -- --test-threads=1
fi
