#!/usr/bin/env bash
# Makes the loopback push providers' Python venv (requirements.txt, from
# PyPI) under the Cargo target directory, only when requirements.txt changed
# since it was made, and prints the venv's python. The push tests
# runs it when MKONDO_PUSH_PYTHON is not set.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/push-providers/venv"
if ! cmp -s "$here/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi
echo "$venv/bin/python"
