#!/usr/bin/env bash
# Type-checks every `ts` example of docs/sdk/web.md with tsc --strict against
# @mkondo/sdk's declarations: each block becomes a module of its own under
# web/tests/.doc-examples/ (so it resolves the package like the tests do).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=web/tests/.doc-examples
rm -rf "$out" && mkdir -p "$out"
awk -v out="$out" '
    /^```ts$/ { n++; file = sprintf("%s/example-%02d.ts", out, n); inside = 1; next }
    /^```/ && inside { inside = 0; close(file); next }
    inside { print > file }
' docs/sdk/web.md
count=$(ls "$out"/*.ts 2>/dev/null | wc -l)
[ "$count" -gt 0 ] || { echo "docs/sdk/web.md has no ts examples" >&2; exit 1; }
target/web-tools/node_modules/.bin/tsc --noEmit --strict --module nodenext --moduleResolution nodenext \
    --target es2022 --lib esnext,dom "$out"/*.ts
echo "docs/sdk/web.md: $count examples type-check"
