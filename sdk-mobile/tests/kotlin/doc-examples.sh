#!/usr/bin/env bash
# Compiles every `kotlin` example of docs/sdk/android.md against the generated
# bindings (on the JVM): the blocks become one file, their imports first.
# Blocks fenced `kotlin android` need the Android SDK and are left out.
# Usage: doc-examples.sh KOTLINC CLASSPATH
set -euo pipefail
cd "$(dirname "$0")/../../.."
kotlinc=$1 classpath=$2
out=target/kotlin-test/doc
mkdir -p "$out"
awk '
    /^```kotlin$/ { inside = 1; n++; next }
    /^```/ && inside { inside = 0; next }
    inside && /^import / { imports[$0] = 1; next }
    inside { body = body $0 "\n" }
    END {
        if (n == 0) { print "docs/sdk/android.md has no kotlin examples" > "/dev/stderr"; exit 1 }
        for (i in imports) print i
        printf "%s", body
    }
' docs/sdk/android.md > "$out/DocExamples.kt"
"$kotlinc" -nowarn -cp "$classpath" bindings/kotlin/io/mkondo/sdk/mkondo.kt "$out/DocExamples.kt" \
    -d "$out/doc.jar"
echo "docs/sdk/android.md: its kotlin examples compile"
