#!/usr/bin/env bash
# Make sure the services the tests use answer on loopback: Redis on 6379, PostgreSQL on
# 5432. Starts whichever is down (installing it from Debian's packages if it is missing).
# Exits non-zero when one cannot be brought up: tests that need it must fail, not skip.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "services: needs root (or sudo) to run: $*" >&2
    return 1
  fi
}
apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 1 60); do
    if $check; then return 0; fi
    sleep 0.5
  done
  echo "services: $what did not come up" >&2
  return 1
}

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  apt_install redis-server
fi
if ! redis_up; then
  echo "services: starting Redis on 127.0.0.1:6379"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
    as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_up
fi

if ! command -v pg_isready >/dev/null || [ ! -d /etc/postgresql ]; then
  apt_install postgresql postgresql-contrib
  # A cluster this script just installed gets what the tests expect of the machine:
  # trust auth for loopback TCP (user postgres, no password). Existing clusters are left alone.
  hba="/etc/postgresql/$(ls /etc/postgresql | sort -V | tail -n 1)/main/pg_hba.conf"
  echo "services: new PostgreSQL cluster: trust auth on 127.0.0.1 and ::1 ($hba)"
  as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  if pg_up; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main reload
  fi
fi
if ! pg_up; then
  echo "services: starting PostgreSQL on 127.0.0.1:5432"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
  wait_for PostgreSQL pg_up
fi
# pg_stat_statements preloaded and HypoPG installed, for the database advisor's tests.
bash "$(dirname "$0")/postgres.sh"
redis_up || { echo "services: Redis on 127.0.0.1:6379 does not answer PING" >&2; exit 1; }
pg_up || { echo "services: PostgreSQL on 127.0.0.1:5432 is not ready" >&2; exit 1; }
echo "services: Redis and PostgreSQL are up"
