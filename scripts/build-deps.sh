#!/usr/bin/env bash
# What building Synopticon needs beyond Rust: libclang, which the `v4l` crate's bindgen
# loads to read the V4L2 headers. Installed from apt when missing.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

has_libclang() {
  ldconfig -p 2>/dev/null | grep -q 'libclang.*\.so' || ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1
}

if ! has_libclang; then
  echo "installing libclang1-14 from apt (bindgen for the v4l crate)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libclang1-14 >/dev/null
fi
