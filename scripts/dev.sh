#!/usr/bin/env bash
# Starts the web demo on a fresh machine: builds the npm package when it is
# missing (or older than the SDK's sources), then runs `mkondo dev`, which prints
# the two demo URLs. Extra arguments go to `mkondo dev` (e.g. --listen 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f sdk-wasm/pkg/index.js ] \
    || [ -n "$(find sdk-core/src sdk-wasm/src sdk-wasm/js sdk-wasm/npm -newer sdk-wasm/pkg/index.js -type f | head -1)" ]; then
    ./scripts/build-web.sh
fi
exec cargo run --locked --release -p mkondo-server --bin mkondo -- dev "$@"
