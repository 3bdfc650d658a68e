#!/usr/bin/env bash
# Builds the npm package @mkondo/sdk into sdk-wasm/pkg/: the client core compiled
# to wasm, its wasm-bindgen glue (ESM), TypeScript types, the .wasm optimised by
# wasm-opt, and the package's README. Installs what is missing (the wasm target,
# the wasm-bindgen CLI matching Cargo.lock, npm binaryen), skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
for tool in cargo node npm; do
    need "$tool" || { echo "build-web: '$tool' is required and not on PATH" >&2; exit 1; }
done

if need rustup && ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
    rustup target add wasm32-unknown-unknown
fi

# The CLI must be exactly the version of the wasm-bindgen crate in Cargo.lock.
version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! need wasm-bindgen || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$version" ]; then
    echo "== installing wasm-bindgen-cli $version (about 3 minutes, once)"
    # Without --locked: the registry lacks one of its locked dependency versions.
    cargo install wasm-bindgen-cli --version "$version"
fi

tools=target/web-tools
if [ ! -x "$tools/node_modules/.bin/wasm-opt" ]; then
    echo "== installing wasm-opt (npm binaryen)"
    mkdir -p "$tools"
    npm install --prefix "$tools" --no-save --no-audit --no-fund binaryen@132 >/dev/null
fi

echo "== building mkondo-wasm (release, wasm32)"
# Size over speed for the download; these apply to this wasm build only.
CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    cargo build --locked --release -p mkondo-wasm --target wasm32-unknown-unknown

pkg=sdk-wasm/pkg
wasm="${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/mkondo_wasm.wasm"
# wasm-opt takes the better part of a minute on two busy cores: skip the rest
# when neither the compiled wasm nor the package's files nor this script changed.
stamp=$( (cat "$wasm" sdk-wasm/npm/* scripts/build-web.sh; wasm-bindgen --version) | sha256sum | cut -d" " -f1)
if [ -f "$pkg/.stamp" ] && [ "$(cat "$pkg/.stamp")" = "$stamp" ]; then
    gz=$(gzip -9 -c "$pkg/mkondo_bg.wasm" | wc -c)
    echo "== $pkg is up to date: mkondo_bg.wasm $((gz / 1024)) KiB gzipped"
    exit 0
fi
rm -rf "$pkg"
wasm-bindgen --target web --out-dir "$pkg" --out-name mkondo \
    "$wasm"
"$tools/node_modules/.bin/wasm-opt" -Oz --converge --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-reference-types --enable-multivalue --enable-sign-ext \
    "$pkg/mkondo_bg.wasm" -o "$pkg/mkondo_bg.wasm"

# The entry point adds the error class (a wasm-bindgen snippet) to the exports;
# index.d.ts declares it.
errors=$(cd "$pkg" && ls snippets/*/js/errors.js)
cp sdk-wasm/npm/package.json sdk-wasm/npm/README.md sdk-wasm/npm/index.d.ts "$pkg/"
cat > "$pkg/index.js" <<JS
export * from './mkondo.js';
export { default } from './mkondo.js';
export { MkondoError } from './$errors';
JS

raw=$(stat -c %s "$pkg/mkondo_bg.wasm")
gz=$(gzip -9 -c "$pkg/mkondo_bg.wasm" | wc -c)
echo "== built $pkg: mkondo_bg.wasm $((raw / 1024)) KiB, $((gz / 1024)) KiB gzipped"
echo "$stamp" >"$pkg/.stamp"
