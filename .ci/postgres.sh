#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for the store's scenario tests.
#
#   .ci/postgres.sh start   # prints the URL and writes `export TAXGATE_TEST_PG_URL=…`
#                           # to ${TAXGATE_PG_ENV:-/tmp/taxgate-pg.env}; `source` that file
#   .ci/postgres.sh stop    # stops the cluster and deletes its directory
#
# Runs as root (CI) or as any user: the cluster belongs to the `postgres` user when we are root,
# since PostgreSQL refuses to run as root. Listens on 127.0.0.1 only, on a free port, with trust
# authentication for local connections (a throwaway test server, never a real one).
set -euo pipefail

ENV_FILE="${TAXGATE_PG_ENV:-/tmp/taxgate-pg.env}"
STATE_FILE="${TAXGATE_PG_STATE:-/tmp/taxgate-pg.state}"

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

start() {
  if [ -f "$STATE_FILE" ]; then
    echo "postgres.sh: a cluster is already running (see $STATE_FILE); stop it first" >&2
    exit 1
  fi
  local bin
  if ! bin="$(find_bin)"; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    bin="$(find_bin)" || { echo "postgres.sh: no initdb/pg_ctl under /usr/lib/postgresql/*/bin" >&2; exit 1; }
  fi
  local dir port
  dir="$(mktemp -d /tmp/taxgate-pg.XXXXXX)"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  chmod 700 "$dir"
  port="$(free_port)"
  as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAt -c "CREATE DATABASE taxgate_test" >/dev/null
  local url="postgres://postgres@127.0.0.1:$port/taxgate_test"
  printf 'DIR=%s\nBIN=%s\n' "$dir" "$bin" >"$STATE_FILE"
  printf 'export TAXGATE_TEST_PG_URL=%s\n' "$url" >"$ENV_FILE"
  echo "postgres.sh: PostgreSQL ($bin) on 127.0.0.1:$port; source $ENV_FILE" >&2
  echo "$url"
}

stop() {
  if [ ! -f "$STATE_FILE" ]; then
    echo "postgres.sh: no cluster to stop" >&2
    return 0
  fi
  # shellcheck disable=SC1090
  . "$STATE_FILE"
  as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null || true
  rm -rf "$DIR" "$STATE_FILE" "$ENV_FILE"
  echo "postgres.sh: stopped and removed $DIR" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
