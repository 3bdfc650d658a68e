#!/usr/bin/env bash
# The wasm-bindgen-test suite of mkondo-wasm (sdk-wasm/tests/) in headless
# Chromium, against a real `mkondo dev` this script starts (wasm cannot listen)
# and stops by its PID. Tokens are minted with the CLI and compiled in.
# Expects the wasm-bindgen CLI (scripts/build-web.sh installs it), chromium and
# chromedriver (web/tests/run.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${MKONDO_BIN:-${CARGO_TARGET_DIR:-target}/debug/mkondo}"
dir=$(mktemp -d)
db="$dir/test.db"
"$bin" dev --listen 127.0.0.1:0 --database "$db" >"$dir/out.log" 2>"$dir/err.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
    grep -qs "listening on" "$dir/out.log" && break
    sleep 0.1
done
addr=$(grep -o 'listening on [0-9.:]*' "$dir/out.log" | awk '{print $3}')
[ -n "$addr" ] || { cat "$dir/err.log" >&2; echo "mkondo dev did not start" >&2; exit 1; }

token() { "$bin" token --app demo --database "$db" "$@"; }
export MKONDO_TEST_URL="http://$addr"
MKONDO_TEST_TOKEN_A=$(token --user wasm-a)
MKONDO_TEST_TOKEN_B=$(token --user wasm-b)
MKONDO_TEST_TOKEN_C=$(token --user wasm-c)
MKONDO_TEST_TOKEN_C_EXPIRED=$(token --user wasm-c --ttl 1)
export MKONDO_TEST_TOKEN_A MKONDO_TEST_TOKEN_B MKONDO_TEST_TOKEN_C MKONDO_TEST_TOKEN_C_EXPIRED
sleep 2 # the short-lived token must be expired when the suite runs

export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
# Flags that work as root in a closed network.
export WASM_BINDGEN_TEST_TIMEOUT=60
cat >"$dir/webdriver.json" <<'JSON'
{ "goog:chromeOptions": { "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--no-first-run", "--disable-dev-shm-usage"] } }
JSON
cp "$dir/webdriver.json" sdk-wasm/webdriver.json
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir" sdk-wasm/webdriver.json' EXIT
(cd sdk-wasm && cargo test --locked --target wasm32-unknown-unknown)
