#!/usr/bin/env bash
# PostgreSQL extras for the asyncperf.db tests: HypoPG installed from the system's packages,
# pg_stat_statements preloaded on the 127.0.0.1:5432 cluster, both extensions created in the
# database "test". Idempotent: it installs, edits and restarts only what is missing.
# Exits non-zero when a step fails: the postgres tests must fail, never skip.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "postgres.sh: needs root (or sudo) to run: $*" >&2
    return 1
  fi
}
psql_test() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5432 -U postgres -d "${1:-test}" "${@:2}"; }
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }

wait_for_pg() {
  for _ in $(seq 1 60); do
    if pg_up && psql_test postgres -Atc 'SELECT 1' >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "postgres.sh: PostgreSQL on 127.0.0.1:5432 did not come up" >&2
  return 1
}

version=$(ls /etc/postgresql | sort -V | tail -n 1)
if [ -z "$version" ]; then
  echo "postgres.sh: no cluster under /etc/postgresql (run .ci/services.sh first)" >&2
  exit 1
fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get -o DPkg::Lock::Timeout=300 update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >/dev/null
}

sharedir=$(pg_config --sharedir 2>/dev/null || echo "/usr/share/postgresql/$version")
[ -d "$sharedir/extension" ] || sharedir="/usr/share/postgresql/$version"
if [ ! -f "$sharedir/extension/hypopg.control" ]; then
  echo "postgres.sh: installing postgresql-$version-hypopg"
  apt_install "postgresql-$version-hypopg"
fi
if [ ! -f "$sharedir/extension/pg_stat_statements.control" ]; then
  echo "postgres.sh: installing postgresql-contrib"
  apt_install postgresql-contrib
fi

if ! pg_up; then
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
wait_for_pg

preload=$(psql_test postgres -Atc 'SHOW shared_preload_libraries')
if [[ ",${preload// /}," != *",pg_stat_statements,"* ]]; then
  if [ -n "${preload// /}" ]; then wanted="$preload, pg_stat_statements"; else wanted="pg_stat_statements"; fi
  echo "postgres.sh: preloading pg_stat_statements (restart)"
  psql_test postgres -c "ALTER SYSTEM SET shared_preload_libraries = '$wanted'"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main restart
  wait_for_pg
fi

if [ "$(psql_test postgres -Atc "SELECT count(*) FROM pg_database WHERE datname = 'test'")" != "1" ]; then
  psql_test postgres -c 'CREATE DATABASE test'
fi
psql_test test -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' \
  -c 'CREATE EXTENSION IF NOT EXISTS hypopg'
psql_test test -Atc "SELECT 'postgres.sh: ' || string_agg(extname || ' ' || extversion, ', ')
  FROM pg_extension WHERE extname IN ('pg_stat_statements', 'hypopg')"
