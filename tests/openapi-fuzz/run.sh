#!/usr/bin/env bash
# Fuzzes the REST API against its own OpenAPI document with Schemathesis: a
# request the document calls valid must never be refused as invalid (422), one
# it calls invalid must always be refused, no answer may be a 5xx, and every
# answer must match the document (status, content type, schema).
#
# Builds nothing: it starts the server binary at $MKONDO_BIN on a fresh SQLite
# database and a free loopback port, and stops it by its PID. Schemathesis
# (pinned in requirements.txt) lives in a venv under the Cargo target directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

bin="${MKONDO_BIN:-}"
if [[ -z "$bin" || ! -x "$bin" ]]; then
    echo "set MKONDO_BIN to a built mkondo binary (cargo build -p mkondo-server --bin mkondo)" >&2
    exit 1
fi

target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/openapi-fuzz/venv"
if ! cmp -s "$here/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi

work="$(mktemp -d)"
pid=""
cleanup() {
    if [[ -n "$pid" ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

db="$work/fuzz.db"
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
# App A is fuzzed with its API key, app B with a user token, app C through the
# operator API (schemathesis.toml says which operation gets which).
export MKONDO_FUZZ_API_KEY="$("$bin" app create --name fuzz-a --json --database "$db" | field api_key)"
app_b="$("$bin" app create --name fuzz-b --json --database "$db" | field app_id)"
export MKONDO_FUZZ_USER_TOKEN="$("$bin" token --app "$app_b" --user fuzz-user --ttl 3600 --database "$db")"
export MKONDO_FUZZ_ADMIN_APP="$("$bin" app create --name fuzz-c --json --database "$db" | field app_id)"
export MKONDO_FUZZ_OPERATOR_SECRET="fuzz-operator-secret-$RANDOM$RANDOM"

"$bin" serve --listen 127.0.0.1:0 --database "$db" \
    --operator-secret "$MKONDO_FUZZ_OPERATOR_SECRET" \
    --rate-per-second 100000 --rate-burst 100000 \
    --api-key-rate-per-second 100000 --api-key-rate-burst 100000 \
    --auth-failures-per-minute 100000 \
    >"$work/stdout" 2>"$work/stderr" &
pid=$!
addr=""
for _ in $(seq 1 300); do
    addr="$(sed -n 's/^mkondo listening on //p' "$work/stdout")"
    [[ -n "$addr" ]] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        cat "$work/stderr" >&2
        echo "mkondo serve exited before listening" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$addr" ]]; then
    echo "mkondo serve did not print its address" >&2
    exit 1
fi

# --generation-deterministic: the same cases on every run (no random seed, no
# example database carried between runs).
# --generation-codec ascii: the length limits of names, ids, emoji and texts
# count UTF-8 bytes, which JSON Schema's maxLength (characters) states exactly
# only for ASCII (docs/rest.md, "What the document cannot say").
# Every check runs (Schemathesis 4's default; naming them with --checks would
# override schemathesis.toml, which turns one off for two operations, saying why).
status=0
# From the temporary directory: Schemathesis keeps a cache in the working one.
cd "$work"
"$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run \
    "http://$addr/v1/openapi.json" \
    --max-examples 25 \
    --generation-deterministic \
    --generation-codec ascii \
    --no-color \
    "$@" || status=$?
if [[ $status -ne 0 ]]; then
    echo "== mkondo serve's log (last lines)" >&2
    tail -n 40 "$work/stderr" >&2
fi
exit $status
