#!/usr/bin/env bash
# Usage: tests/venv.sh <dir>. Makes the Python venv of the loopback servers
# in tests/<dir>/ (its requirements.txt, from PyPI) under the Cargo target
# directory, only when requirements.txt changed since it was made, and prints
# the venv's python. The tests run it (`mkondo_tests::venv::python`) unless
# they are given a python. Test processes running at once wait for each
# other on a lock beside the venv (flock, util-linux): none removes a venv
# while another is installing it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
dir="${1:?usage: tests/venv.sh <dir with a requirements.txt>}"
requirements="$here/$dir/requirements.txt"

target="${CARGO_TARGET_DIR:-$root/target}"
venv="$target/$dir/venv"
mkdir -p "$target/$dir"
exec 9>"$target/$dir/venv.lock"
flock 9
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
    cp "$requirements" "$venv/requirements.txt"
fi
echo "$venv/bin/python"
