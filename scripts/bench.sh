#!/usr/bin/env bash
# Benchmarks Mkondo against socket.io and a bare WebSocket baseline on this
# machine: the one command behind BENCHMARKS.md. Builds the release server and
# load generator (with the baseline, `mkondo-baseline`), installs the socket.io
# peer, raises the open-file limit, and runs every scenario (about 13 minutes,
# bounded at 15). Results and SVG figures go to bench/results/. The callgrind
# scenario (instructions per delivery) needs valgrind and is skipped without it.
#
#   scripts/bench.sh            # the full suite
#   scripts/bench.sh --smoke    # tiny sizes, seconds: checks the tool works (CI)
#   scripts/bench.sh --only fanout --transports ws-proto   # any mkondo-bench flags
#   scripts/bench.sh --only callgrind                      # instructions per delivery
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
for tool in cargo node npm; do
    if ! need "$tool"; then
        echo "$tool is required for the benchmarks; it is not found on PATH" >&2
        exit 1
    fi
done

# Every connection is a file descriptor on both sides. The server, the
# socket.io peer and the generator are separate processes, so each gets this
# limit; the hard limit caps it (20,000 on the project's machine, hence idle
# runs 19,900 connections: the server needs a few descriptors of its own).
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 200000 ]; then hard=200000; fi
ulimit -n "$hard"
echo "== open files: $(ulimit -n) per process"

smoke=0
for arg in "$@"; do [ "$arg" = --smoke ] && smoke=1; done

# Two cargo calls, not one: built together, the two packages' features would
# be unified and the server rebuilt unlike `cargo build -p mkondo-server`.
if [ "$smoke" = 1 ]; then
    # CI: the debug server the tests already built is enough to check the tool.
    echo "== build: server and load generator (debug)"
    profile_flag=()
    profile=debug
else
    echo "== build: server and load generator (release)"
    profile_flag=(--release)
    profile=release
fi
cargo build --locked "${profile_flag[@]}" -p mkondo-server --bin mkondo
cargo build --locked "${profile_flag[@]}" -p mkondo-bench
target_dir="${CARGO_TARGET_DIR:-target}"

echo "== socket.io peer: npm ci"
if [ ! -d bench/peers/socketio/node_modules/socket.io ]; then
    (cd bench/peers/socketio && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ "$smoke" = 1 ]; then
    echo "== SDK cold start from the offline store (tiny)"
    "$target_dir/$profile/mkondo-cold-start" --conversations 10 --messages 5 --runs 2
elif [ "$#" = 0 ]; then
    echo "== SDK cold start from the offline store"
    "$target_dir/$profile/mkondo-cold-start"
fi

echo "== run"
exec "$target_dir/$profile/mkondo-bench" --mkondo-bin "$target_dir/$profile/mkondo" "$@"
