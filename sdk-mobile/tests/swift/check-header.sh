#!/usr/bin/env bash
# The Swift check that runs without Swift: compiles a C program against the
# generated MkondoFFI.h that takes the address of every declared function, links
# it to the built library and runs it. It also calls every checksum function and
# compares it with the value the generated Mkondo.swift expects, plus the
# contract version — so header, Swift file and library cannot drift apart.
# Usage: check-header.sh <bindings/swift dir> <dir of libmkondo_mobile.so>
set -euo pipefail
swift_dir=$1
lib_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
header="$swift_dir/MkondoFFI.h"
swift="$swift_dir/Mkondo.swift"

names=$(grep -v '^typedef' "$header" | grep -oE '\b(uniffi|ffi)_mkondo_mobile_[A-Za-z0-9_]+\(' | tr -d '(' | sort -u)
count=$(echo "$names" | wc -l)
{
    echo '#include <stdio.h>'
    echo '#include "MkondoFFI.h"'
    echo 'int main(void) {'
    echo '    int failed = 0;'
    echo '    void *volatile fns[] = {'
    for n in $names; do echo "        (void *)&$n,"; done
    echo '    };'
    echo '    for (unsigned i = 0; i < sizeof fns / sizeof fns[0]; i++) if (!fns[i]) failed++;'
    version=$(grep -oE 'bindings_contract_version = [0-9]+' "$swift" | grep -oE '[0-9]+$')
    echo "    if (ffi_mkondo_mobile_uniffi_contract_version() != $version) { puts(\"contract version differs\"); failed++; }"
    grep -oE '(uniffi_mkondo_mobile_checksum_[A-Za-z0-9_]+)\(\) != [0-9]+' "$swift" | while read -r fn _ value; do
        fn=${fn%()}
        echo "    if ($fn() != $value) { puts(\"checksum differs: $fn\"); failed++; }"
    done
    echo "    printf(\"%u functions linked, checksums checked\\n\", (unsigned)(sizeof fns / sizeof fns[0]));"
    echo '    return failed != 0;'
    echo '}'
} >"$work/check.c"
gcc -std=c11 -Wall -Werror -D_Nullable= -D_Nonnull= -I "$swift_dir" "$work/check.c" \
    -L "$lib_dir" -lmkondo_mobile -Wl,-rpath,"$(cd "$lib_dir" && pwd)" -o "$work/check"
"$work/check"
echo "swift header check: $count declared functions present in the library"
