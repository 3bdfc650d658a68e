#!/usr/bin/env bash
# Builds the mobile library (mkondo-mobile) and generates its bindings:
#   bindings/python  module  `mkondo`          (a pip-installable package with the .so inside)
#   bindings/kotlin  package `io.mkondo.sdk`   (+ the .so for JVM tests)
#   bindings/swift   module  `Mkondo`          (Mkondo.swift, MkondoFFI.h, modulemap)
# Usage: scripts/build-bindings.sh [--release]
# Everything under bindings/ is generated: it is git-ignored and rebuilt here.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
flags=()
if [[ "${1:-}" == "--release" ]]; then
    profile=release
    flags=(--release)
fi

cargo build "${flags[@]}" -p mkondo-mobile --lib --bin uniffi-bindgen
lib="${CARGO_TARGET_DIR:-target}/$profile/libmkondo_mobile.so"
[[ "$(uname)" == Darwin ]] && lib="${CARGO_TARGET_DIR:-target}/$profile/libmkondo_mobile.dylib"
bindgen="${CARGO_TARGET_DIR:-target}/$profile/uniffi-bindgen"

rm -rf bindings/python bindings/kotlin bindings/swift
for lang in python kotlin swift; do
    "$bindgen" generate --library "$lib" --language "$lang" \
        --out-dir "bindings/$lang" --no-format
done
# Python: a package directory `mkondo/` holding the module and the library it
# loads from beside itself; `pip install bindings/python` installs both.
mkdir -p bindings/python/mkondo
mv bindings/python/mkondo.py bindings/python/mkondo/__init__.py
cp "$lib" bindings/python/mkondo/
cp sdk-mobile/python/pyproject.toml bindings/python/
cp "$lib" bindings/kotlin/
echo "bindings generated in bindings/{python,kotlin,swift} from $lib"
