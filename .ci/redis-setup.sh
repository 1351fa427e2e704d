#!/usr/bin/env bash
# Install the server binaries the Redis and PostgreSQL tests and benchmarks need: Debian's
# redis-server and redis-tools (redis-cli), openssl for the TLS test, iproute2 (`ip`) for
# the partition tests' network namespaces, the PostgreSQL server (initdb, postgres) and
# PgBouncer, only when they are missing. Idempotent; prints the versions.
# It never starts, stops or reconfigures the system's redis-server, postgresql or pgbouncer
# services (a cluster that Debian's postgresql package creates is the machine's own): the
# tests and benchmarks start private servers of their own on free loopback ports.
set -euo pipefail

say() { printf '[redis-setup] %s\n' "$*"; }

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/bin/$1" ] || [ -x "/usr/sbin/$1" ]; }

missing=()
have redis-server || missing+=(redis-server)
have redis-cli || missing+=(redis-tools)
have openssl || missing+=(openssl)  # the TLS test makes a throwaway certificate
have ip || missing+=(iproute2)  # tests/test_redis_partition.py: ip netns, veth, bridge
# tests/pg_servers: initdb and postgres (Debian keeps them off PATH, in
# /usr/lib/postgresql/<version>/bin), and pgbouncer for the pooling-mode tests.
pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}
pg_bindir >/dev/null || missing+=(postgresql)
have pgbouncer || missing+=(pgbouncer)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      SUDO=(sudo)
    else
      say "need root to apt-get install ${missing[*]}"; exit 1
    fi
  else
    SUDO=()
  fi
  say "installing ${missing[*]} (apt)"
  "${SUDO[@]}" apt-get update -qq
  # Debian's postinsts would start the redis-server, postgresql and pgbouncer services: a
  # temporary policy-rc.d (exit 101 = "action forbidden") keeps the system services as
  # they were. An existing policy-rc.d is left alone.
  policy=/usr/sbin/policy-rc.d
  ours=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod +x "$policy"
    ours=1
    trap '"${SUDO[@]}" rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$ours" -eq 1 ]; then
    "${SUDO[@]}" rm -f "$policy"
    trap - EXIT
  fi
else
  say "redis-server, redis-cli, openssl, iproute2, postgresql and pgbouncer already installed"
fi

PATH="$PATH:/usr/sbin:/usr/bin"
say "$(redis-server --version)"
say "$(redis-cli --version)"
say "$(ip -V)"
say "$("$(pg_bindir)/postgres" --version) ($(pg_bindir))"
say "$(pgbouncer --version 2>/dev/null | head -n 1 || /usr/sbin/pgbouncer --version | head -n 1)"
