#!/usr/bin/env bash
# Installs Debian's PostgreSQL, Redis and nginx when missing: the tests start
# them themselves (tests/src/services/), and list the tests that need them as
# ignored when they are not installed. `./scripts/test.sh` runs `install`, so CI
# skips nothing.
#
# `start` runs one shared PostgreSQL and Redis on fixed loopback ports instead,
# for running the tests against long-lived servers (the tests use them when the
# printed variables are set):
#
#   scripts/services.sh install # apt-get install what is missing
#   scripts/services.sh start   # prints `export …` lines; `eval "$(scripts/services.sh start)"`
#   scripts/services.sh stop    # stops both by the PIDs recorded at start
#
# Data lives under $MKONDO_SERVICES_DIR (default: <target dir>/services), thrown
# away at every start. PostgreSQL trusts loopback connections (test data only).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
dir="${MKONDO_SERVICES_DIR:-$target/services}"
case "$dir" in /*) ;; *) dir="$(pwd)/$dir" ;; esac
pg_port="${MKONDO_PG_PORT:-55432}"
redis_port="${MKONDO_REDIS_PORT:-56379}"

log() { echo "$@" >&2; }

pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    return 1
}

install_missing() {
    local pkgs=()
    pg_bin >/dev/null || pkgs+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || pkgs+=(redis-server)
    # The multi-node tests put real nginx (deploy/nginx.conf) in front of the nodes.
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || pkgs+=(nginx-light)
    [ ${#pkgs[@]} -eq 0 ] && return 0
    log "installing ${pkgs[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    # Debian starts installed services through invoke-rc.d; we run our own.
    $sudo env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get update -qq >&2
    $sudo env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
        apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
}

# PostgreSQL refuses to run as root: run it as the `postgres` user when we are root.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

stop() {
    local pidfile pid
    for pidfile in "$dir/redis.pid" "$dir/pg/postmaster.pid"; do
        [ -f "$pidfile" ] || continue
        pid="$(head -1 "$pidfile")"
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
    done
    rm -rf "$dir"
}

wait_for() {
    local what="$1"; shift
    for _ in $(seq 1 150); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "$what did not start; see $dir"
    return 1
}

start() {
    install_missing
    stop
    mkdir -p "$dir/pg"
    local bin
    bin="$(pg_bin)"
    if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres: "$dir/pg"
        chmod 700 "$dir/pg"
    fi
    log "starting PostgreSQL on 127.0.0.1:$pg_port"
    as_pg "$bin/initdb" -D "$dir/pg" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1
    as_pg "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg/server.log" -w -t 30 \
        -o "-h 127.0.0.1 -p $pg_port -k $dir/pg -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >&2
    wait_for PostgreSQL "$bin/pg_isready" -h 127.0.0.1 -p "$pg_port"

    log "starting Redis on 127.0.0.1:$redis_port"
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" >&2
    wait_for Redis redis-cli -h 127.0.0.1 -p "$redis_port" ping

    echo "export MKONDO_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/postgres"
    echo "export MKONDO_TEST_REDIS_URL=redis://127.0.0.1:$redis_port"
}

case "${1:-}" in
    install) install_missing ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
