#!/usr/bin/env bash
# The mobile bindings' tests (called by scripts/test.sh): builds the library,
# generates the bindings, then runs the one scenario (tests/scenarios.md) in
# Python (pytest, with docs/sdk/python.md's examples) and Kotlin (JVM; and
# compiles docs/sdk/android.md's examples), and checks the Swift header against
# the library and docs/sdk/ios.md's examples against the generated Swift.
# Installs what is missing (a venv with pytest, npm kotlin-compiler, Debian
# libjna-java) under target/ and skips what is present.
set -euo pipefail
cd "$(dirname "$0")/../.."

[[ -n ${MKONDO_BIN:-} ]] || cargo build --locked -p mkondo-server --bin mkondo
scripts/build-bindings.sh

echo "== python bindings (pytest)"
venv=target/mobile-venv
sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv" 2>/dev/null || {
        rm -rf "$venv"
        $sudo apt-get update -qq && $sudo apt-get install -y -qq python3-venv
        python3 -m venv "$venv"
    }
fi
"$venv/bin/python" -c 'import pytest' 2>/dev/null || "$venv/bin/pip" install -q pytest
"$venv/bin/python" -m pytest -q -p no:cacheprovider sdk-mobile/tests/python

echo "== kotlin bindings (JVM)"
tools=target/mobile-tools
kotlinc=$tools/node_modules/kotlin-compiler/bin/kotlinc
[[ -x $kotlinc ]] || npm install --silent --prefix "$tools" kotlin-compiler
jna=/usr/share/java/jna.jar
if [[ ! -f $jna ]]; then
    $sudo apt-get update -qq && $sudo apt-get install -y -qq libjna-java
fi
klib=$tools/node_modules/kotlin-compiler/lib
mkdir -p target/kotlin-test
"$kotlinc" -nowarn -cp "$jna:$klib/kotlinx-coroutines-core-jvm.jar" \
    bindings/kotlin/io/mkondo/sdk/mkondo.kt sdk-mobile/tests/kotlin/ScenarioTest.kt \
    sdk-mobile/tests/kotlin/OfflineClient.kt \
    -d target/kotlin-test/scenario.jar
java -Djna.library.path=bindings/kotlin \
    -cp "target/kotlin-test/scenario.jar:$jna:$klib/kotlinx-coroutines-core-jvm.jar:$klib/kotlin-stdlib.jar" \
    ScenarioTestKt

echo "== docs/sdk/android.md's examples compile against the Kotlin bindings"
sdk-mobile/tests/kotlin/doc-examples.sh "$kotlinc" "$jna:$klib/kotlinx-coroutines-core-jvm.jar"

echo "== swift bindings (C header against the library)"
sdk-mobile/tests/swift/check-header.sh bindings/swift "${CARGO_TARGET_DIR:-target}/debug"
echo "== docs/sdk/ios.md's examples against the generated Swift (names and labels; no Swift compiler here)"
python3 sdk-mobile/tests/swift/check-doc.py docs/sdk/ios.md bindings/swift/Mkondo.swift
