#!/usr/bin/env bash
# What building Synopticon needs beyond Rust: libclang, which the `v4l` crate's bindgen
# loads to read the V4L2 headers. Installed from apt when missing.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

# libclang itself (libclang.so.1, libclang-14.so.1), not libclang-cpp, which bindgen cannot use.
has_libclang() {
  ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so' ||
    compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null ||
    compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null
}

if ! has_libclang; then
  echo "installing libclang1-14 from apt (bindgen for the v4l crate)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libclang1-14 >/dev/null
fi
