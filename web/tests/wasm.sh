#!/usr/bin/env bash
# The wasm-bindgen-test suites of mkondo-wasm (sdk-wasm/tests/): the client
# suite twice, in headless Chromium and in Node (with --experimental-websocket: Node 20 has no
# global WebSocket). Both runs share one real `mkondo dev` started by
# web/tests/lib/control.mjs (wasm cannot listen), which the suite stops and
# restarts on the same port and database through a side port. Tokens are minted
# with the CLI and compiled in. The offline store's suite (tests/store.rs) runs
# in Chromium only.
# Expects the wasm-bindgen CLI (scripts/build-web.sh installs it), chromium and
# chromedriver (web/tests/run.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${MKONDO_BIN:-${CARGO_TARGET_DIR:-target}/debug/mkondo}"
export MKONDO_BIN="$bin"
dir=$(mktemp -d)
db="$dir/test.db"
node web/tests/lib/control.mjs "$db" >"$dir/out.log" 2>"$dir/err.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir" sdk-wasm/webdriver.json' EXIT
for _ in $(seq 300); do
    grep -qs "^control " "$dir/out.log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
addr=$(awk '/^server / {print $2}' "$dir/out.log")
control=$(awk '/^control / {print $2}' "$dir/out.log")
[ -n "$control" ] || { cat "$dir/err.log" >&2; echo "mkondo dev did not start" >&2; exit 1; }

token() { "$bin" token --app demo --database "$db" "$@"; }
export MKONDO_TEST_URL="http://$addr" MKONDO_TEST_CONTROL="http://$control"
MKONDO_TEST_TOKEN_A=$(token --user wasm-a)
MKONDO_TEST_TOKEN_B=$(token --user wasm-b)
MKONDO_TEST_TOKEN_C=$(token --user wasm-c)
MKONDO_TEST_TOKEN_C_EXPIRED=$(token --user wasm-c --ttl 1)
expired_at=$(($(date +%s) + 2))
export MKONDO_TEST_TOKEN_A MKONDO_TEST_TOKEN_B MKONDO_TEST_TOKEN_C MKONDO_TEST_TOKEN_C_EXPIRED

# The Node runner has no per-test timeout: `timeout` stops a hung run.
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="timeout 300 wasm-bindgen-test-runner"
export CHROMEDRIVER="${CHROMEDRIVER:-$(command -v chromedriver)}"
export WASM_BINDGEN_TEST_TIMEOUT=90
# Flags that work as root in a closed network.
cat >sdk-wasm/webdriver.json <<'JSON'
{ "goog:chromeOptions": { "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--no-first-run", "--disable-dev-shm-usage"] } }
JSON
# Built once (while the short-lived token expires), run twice: the suite does
# not pick its environment, the runner does (WASM_BINDGEN_USE_BROWSER, else Node).
suite() { (cd sdk-wasm && cargo test --locked --target wasm32-unknown-unknown --test client "$@"); }
suite --no-run
(cd sdk-wasm && cargo test --locked --target wasm32-unknown-unknown --test store --no-run)
# The short-lived token must be expired when the suite runs.
while [ "$(date +%s)" -lt "$expired_at" ]; do sleep 0.2; done
echo "== in headless Chromium"
WASM_BINDGEN_USE_BROWSER=1 suite
echo "== the offline store (IndexedDB, Web Locks) in headless Chromium, with its cold-start figures"
# Browser only (Node has no IndexedDB); --nocapture prints the figures.
(cd sdk-wasm && WASM_BINDGEN_USE_BROWSER=1 cargo test --locked --target wasm32-unknown-unknown --test store -- --nocapture)
echo "== in Node $(node --version)"
NODE_ARGS=--experimental-websocket suite
