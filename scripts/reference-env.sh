#!/usr/bin/env bash
# Builds the Python environment the inference tests run the reference detector in
# (scripts/reference_detect.py): onnxruntime (the same 1.32.0 wheel the server loads),
# numpy and onnx; the tracker comparison (scripts/supervision_track.py): supervision; and
# the OpenAPI document's check: openapi-spec-validator; the recordings' independent
# reader: mcap (Foxglove's Python MCAP library, with zstandard for the chunks); the server
# checked against its own OpenAPI document: schemathesis.
# All in a virtualenv under the cache folder. Prints the interpreter's path.
set -euo pipefail
CACHE="${SYNOPTICON_CACHE:-$(cd "$(dirname "$0")/.." && pwd)/.cache}"
VENV="$CACHE/venv"
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
REQUIREMENTS=(onnxruntime==1.32.0 numpy==2.4.6 onnx==1.23.2 supervision==0.27.0 openapi-spec-validator==0.9.0 mcap==1.6.0 zstandard==0.25.0 schemathesis==4.32.5)

if "$VENV/bin/python" -c "import onnxruntime, numpy, onnx, supervision, openapi_spec_validator, mcap, zstandard, schemathesis" 2>/dev/null; then
  echo "$VENV/bin/python"
  exit 0
fi
if ! command -v python3 >/dev/null || ! python3 -m venv --help >/dev/null 2>&1; then
  echo "installing python3 and python3-venv from apt" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
fi
[ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
echo "installing ${REQUIREMENTS[*]} into $VENV" >&2
# Reuse the onnxruntime wheel fetch-assets.sh already downloaded.
"$VENV/bin/pip" install --quiet --find-links "$CACHE/wheels" "${REQUIREMENTS[@]}" >&2
echo "$VENV/bin/python"
