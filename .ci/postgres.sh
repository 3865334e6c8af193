#!/usr/bin/env bash
# A throwaway PostgreSQL server for the worker tests (tests/test_workers.py), on 127.0.0.1 only.
#   eval "$(.ci/postgres.sh start)"   # initdb in a temp dir, start on a free port, create a database;
#                                     # prints the exports METAHP_TEST_POSTGRES_URL and METAHP_PG_DIR
#   .ci/postgres.sh stop              # stops the server in $METAHP_PG_DIR and deletes the directory
# PostgreSQL refuses to run as root: as root the server runs as the 'postgres' user (created if missing).
# Without PostgreSQL binaries it installs them with apt-get (root), or fails saying so.
set -euo pipefail

find_bin() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
    return 1
}

as_owner() {  # run a server command as the cluster's owner
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
    local bin
    if ! bin=$(find_bin); then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "postgres.sh: installing PostgreSQL (apt-get install -y postgresql)" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
            bin=$(find_bin)
        else
            echo "postgres.sh: no PostgreSQL binaries (initdb); install them: apt-get install -y postgresql" >&2
            exit 1
        fi
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home postgres
    fi
    local dir port
    dir=$(mktemp -d /tmp/metahp-pg.XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >&2 \
        || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres metahp_test
    echo "export METAHP_PG_DIR=$dir"
    echo "export METAHP_PG_BIN=$bin"
    echo "export METAHP_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$port/metahp_test"
}

stop() {
    local dir=${1:-${METAHP_PG_DIR:-}}
    [ -n "$dir" ] && [ -d "$dir/data" ] || { echo "postgres.sh stop: no server directory (METAHP_PG_DIR)" >&2; exit 1; }
    local bin=${METAHP_PG_BIN:-$(find_bin)}
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 || true
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *) echo "usage: $0 start | stop [DIR]" >&2; exit 2 ;;
esac
