#!/usr/bin/env bash
# Makes sure the peers the tests talk to exist and run: Mosquitto on 127.0.0.1:1883 and
# Redis on 127.0.0.1:6379; and that the openssl and ffmpeg commands are installed.
# Installs from apt when missing; starts a local instance when nothing listens.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_package() { # command package
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ]; then
    echo "installing $2 from apt"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$2" >/dev/null
  fi
}

ensure_package mosquitto mosquitto
# The MQTT TLS test makes its own throwaway CA with the openssl command.
ensure_package openssl openssl
# `synopticon analyze` decodes videos through an ffmpeg subprocess; the tests make clips.
ensure_package ffmpeg ffmpeg
export PATH="$PATH:/usr/sbin"
if ! listening 1883; then
  echo "starting mosquitto on 127.0.0.1:1883"
  mosquitto -d -p 1883
  for _ in $(seq 50); do listening 1883 && break; sleep 0.1; done
fi
listening 1883 || { echo "mosquitto is not listening on 1883" >&2; exit 1; }

ensure_package redis-server redis-server
if ! listening 6379; then
  echo "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do listening 6379 && break; sleep 0.1; done
fi
listening 6379 || { echo "redis-server is not listening on 6379" >&2; exit 1; }
