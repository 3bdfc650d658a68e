#!/usr/bin/env bash
# The web SDK's tests: builds @mkondo/sdk (scripts/build-web.sh), then runs the
# wasm-bindgen-test suite in headless Chromium and in Node (web/tests/wasm.sh,
# which restarts the server mid-suite), checks the package's TypeScript types
# (and docs/sdk/web.md's examples against them), and
# runs the Node test of the package, the Playwright tests of the two-window
# demo, of the demo offline (the store in IndexedDB, two tabs) and its push
# service worker, of browser origins (CORS, WebSocket Origin)
# and of TLS, all against a real `mkondo dev`. Installs what is missing (Debian
# chromium, chromedriver and certutil, npm playwright-core), skips what is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

need() { command -v "$1" >/dev/null 2>&1; }

./scripts/build-web.sh
[[ -n ${MKONDO_BIN:-} ]] || cargo build --locked -p mkondo-server --bin mkondo

if ! need chromium || ! need chromedriver; then
    echo "== installing chromium (Debian)"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq chromium chromium-driver >/dev/null; fi
fi
if ! need certutil; then
    echo "== installing certutil (Debian's libnss3-tools: the TLS test's browser trust store)"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq libnss3-tools >/dev/null
    else sudo apt-get update -qq && sudo apt-get install -y -qq libnss3-tools >/dev/null; fi
fi
if [ ! -d web/tests/node_modules/playwright-core ] || [ ! -e web/tests/node_modules/@mkondo/sdk ]; then
    echo "== installing the web tests' npm packages"
    npm install --prefix web/tests --no-audit --no-fund >/dev/null
fi

export CHROMIUM="${CHROMIUM:-$(command -v chromium)}"
echo "== mkondo-wasm's wasm-bindgen-test suite in headless Chromium and in Node"
web/tests/wasm.sh
echo "== @mkondo/sdk's TypeScript types (tsc --strict; misuse must not compile)"
# Every parameter and result of Client is typed: a JsValue without
# `unchecked_*_type` shows up as `any` in the generated declarations.
if sed -n '/^export class Client/,/^}/p' sdk-wasm/pkg/mkondo.d.ts | grep -v '^ *\(/\*\|\*\)' | grep -w any; then
    echo "untyped ('any') members in Client (sdk-wasm/pkg/mkondo.d.ts)" >&2
    exit 1
fi
[ -x target/web-tools/node_modules/.bin/tsc ] \
    || npm install --prefix target/web-tools --no-save --no-audit --no-fund typescript@5 binaryen@132 >/dev/null
target/web-tools/node_modules/.bin/tsc --noEmit --strict --module nodenext --moduleResolution nodenext \
    --target es2022 --lib esnext,dom web/tests/types-check.ts
echo "== docs/sdk/web.md's examples type-check against the package"
web/tests/doc-examples.sh
echo "== @mkondo/sdk in Node (by package name)"
node --experimental-websocket --test web/tests/node.test.mjs
echo "== the two-window demo in headless Chromium (Playwright)"
node --test web/tests/demo.test.mjs
echo "== files: an image sent in one demo window shows in the other (Playwright)"
node --test web/tests/files.test.mjs
echo "== offline: the demo's history with the server stopped, sent once from one of two tabs (Playwright)"
node --test web/tests/offline.test.mjs
echo "== the demo's service worker shows Web Push messages (DevTools-delivered pushes)"
node --test web/tests/push.test.mjs
echo "== the package over TLS in headless Chromium trusting a test CA (an NSS database)"
node --test web/tests/tls.test.mjs
echo "== browser origins: fetch and WebSocket from another origin (Playwright)"
node --test web/tests/cors.test.mjs
echo "== web tests passed (screenshots in target/web-tests/)"
