#!/usr/bin/env bash
# Runs every Mkondo test: the one command a new contributor (and CI) runs.
# Installs what it needs when missing, skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
    echo "cargo is required (https://rustup.rs); it is not found on PATH" >&2
    exit 1
fi
if need rustup; then
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
    rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' \
        || rustup target add wasm32-unknown-unknown
fi

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== the client core builds and lints for the browser (wasm32)"
cargo build --locked -p mkondo-sdk --target wasm32-unknown-unknown
cargo clippy --locked -p mkondo-sdk --target wasm32-unknown-unknown -- -D warnings

echo "== PostgreSQL, Redis and nginx for the multi-node tests (installed when missing)"
# The tests start them themselves; without them those tests would be ignored.
scripts/services.sh install

echo "== tests"
cargo test --workspace --locked

echo "== a slice of the end-to-end suite again, on PostgreSQL"
# Test names start with their module (tests/tests/e2e/<area>.rs).
# `--workspace --tests` reuses the build above (`-p mkondo-tests` would unify
# features differently and rebuild the dependency tree); the filters also
# select a few dozen unit tests of other crates, which run in a second.
MKONDO_TEST_STORE=postgres cargo test --locked --workspace --tests -- \
    chat:: ordering:: resume:: unread:: hide:: blocks:: notifications:: roles:: \
    lifecycle:: delete_conversation:: rest:: operations:: durability:: operator:: sdk_chat:: \
    ownership:: events:: hooks:: webhooks:: devices:: push:: sdk_people:: files::

echo "== the files scenarios again, on the S3 store (moto checking every signature, in a venv)"
MKONDO_TEST_BLOBS=s3 cargo test --locked --workspace --tests -- files::

echo "== build the server binary the suites in other languages start"
# With `--workspace --tests` features resolve as for the tests above, so this
# links the binary from their build (`-p mkondo-server` would rebuild the tree).
cargo build --locked --workspace --tests --bin mkondo
# They start it from MKONDO_BIN (wherever cargo puts it); their own
# `cargo build -p mkondo-server` runs only when it is not set.
export MKONDO_BIN="${MKONDO_BIN:-$(pwd)/${CARGO_TARGET_DIR:-target}/debug/mkondo}"
case "${CARGO_TARGET_DIR:-}" in /*) MKONDO_BIN="${CARGO_TARGET_DIR}/debug/mkondo" ;; esac

echo "== the REST API against its OpenAPI document: Schemathesis, pinned, in a venv"
tests/openapi-fuzz/run.sh

echo "== mobile bindings: Python, Kotlin (JVM), Swift header check"
sdk-mobile/tests/run.sh

echo "== web SDK: mkondo-wasm lints for wasm32; the package in Node and the demo in Chromium"
cargo clippy --locked -p mkondo-wasm --all-targets --target wasm32-unknown-unknown -- -D warnings
web/tests/run.sh

echo "== benchmarks, smoke: every scenario but callgrind at tiny sizes, so the tool keeps working"
scripts/bench.sh --smoke
