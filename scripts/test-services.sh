#!/usr/bin/env bash
# Makes sure the peers the tests talk to exist and run: Mosquitto on 127.0.0.1:1883,
# Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (role synopticon); and that the
# openssl and ffmpeg commands and Python's aiosmtpd (an SMTP server) are installed.
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
# A real SMTP server for the rule e-mail tests (the tests start it on a port of their own).
if ! /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "installing python3-aiosmtpd from apt"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-aiosmtpd >/dev/null
fi
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

# PostgreSQL for the store's tests: a server on 127.0.0.1:5432 and a role that may create
# databases (each test makes its own). Debian's package starts a cluster; its local socket
# lets the postgres user in (peer), which is how the role is made.
if ! command -v psql >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing postgresql from apt"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
if ! listening 5432; then
  echo "starting postgresql on 127.0.0.1:5432"
  for cluster in /etc/postgresql/*/main; do
    version=$(basename "$(dirname "$cluster")")
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 100); do listening 5432 && break; sleep 0.1; done
fi
listening 5432 || { echo "postgresql is not listening on 5432" >&2; exit 1; }
as_postgres() { if [ "$(id -un)" = postgres ]; then "$@"; else $SUDO runuser -u postgres -- "$@"; fi; }
if ! PGPASSWORD=synopticon psql -h 127.0.0.1 -U synopticon -d postgres -tAc 'select 1' >/dev/null 2>&1; then
  echo "creating the postgresql role synopticon (password synopticon, may create databases)"
  as_postgres psql -q -d postgres -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'synopticon') THEN CREATE ROLE synopticon LOGIN CREATEDB PASSWORD 'synopticon'; ELSE ALTER ROLE synopticon LOGIN CREATEDB PASSWORD 'synopticon'; END IF; END \$\$;"
fi
PGPASSWORD=synopticon psql -h 127.0.0.1 -U synopticon -d postgres -tAc 'select 1' >/dev/null \
  || { echo "cannot log in to postgresql as synopticon on 127.0.0.1" >&2; exit 1; }
