#!/usr/bin/env python3
"""Checks docs/sdk/ios.md's `swift` examples against the generated Swift
bindings (no Swift compiler exists on the test machines): every
`client.name(label: …)` call names a method of `Client` whose argument labels
are the ones used, and every record built with `Name(label: …)` uses labels its
initializer has, in its order.

Usage: check-doc.py DOC MKONDO_SWIFT"""

import re
import sys


def split_args(text):
    """Top-level comma-separated arguments of a call's text."""
    args, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            args.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        args.append(cur)
    return args


def call_args(src, start):
    """The text between the parenthesis at `start` and its match."""
    depth = 0
    for i in range(start, len(src)):
        if src[i] == "(":
            depth += 1
        elif src[i] == ")":
            depth -= 1
            if depth == 0:
                return src[start + 1:i]
    raise ValueError("unbalanced call")


def labels(args):
    out = []
    for a in split_args(args):
        m = re.match(r"\s*(\w+)\s*:", a)
        out.append(m.group(1) if m else None)
    return out


def main(doc_path, swift_path):
    doc = open(doc_path, encoding="utf-8").read()
    # Doc comments sit between parameters: drop them.
    swift = re.sub(r"/\*.*?\*/", "", open(swift_path, encoding="utf-8").read(), flags=re.S)
    blocks = re.findall(r"^```swift\n(.*?)^```", doc, flags=re.S | re.M)
    if not blocks:
        sys.exit(f"{doc_path}: no swift examples")
    client = swift[swift.index("open class Client"):swift.index("public struct FfiConverterTypeClient")]
    methods = {}
    for m in re.finditer(r"open func (\w+)\(", client):
        methods[m.group(1)] = labels(call_args(client, m.end() - 1))
    ctor = re.search(r"public convenience init\(", client)
    methods["init"] = labels(call_args(client, ctor.end() - 1))
    records = {}
    for m in re.finditer(r"public struct (\w+)[^{\n]*\{", swift):
        body = swift[m.end():]
        init = re.search(r"public init\(", body[:body.find("\n}\n")])
        if init:
            params = call_args(body, init.end() - 1)
            records[m.group(1)] = [
                (p.split(":")[0].strip(), "=" in p) for p in split_args(params)
            ]
    problems, checked = [], 0
    for block in blocks:
        for m in re.finditer(r"\bclient\.(\w+)\(", block):
            name, used = m.group(1), labels(call_args(block, m.end() - 1))
            checked += 1
            if name not in methods:
                problems.append(f"client.{name}: Client has no such method")
            elif used != methods[name]:
                problems.append(f"client.{name}: labels {used}, Swift has {methods[name]}")
        for m in re.finditer(r"\bClient\(", block):
            used = labels(call_args(block, m.end() - 1))
            checked += 1
            if used != methods["init"]:
                problems.append(f"Client(…): labels {used}, Swift has {methods['init']}")
        for m in re.finditer(r"\b([A-Z]\w+)\(", block):
            name = m.group(1)
            if name not in records or name == "Client":
                continue
            used = labels(call_args(block, m.end() - 1))
            params = records[name]
            checked += 1
            names = [p for p, _ in params]
            if any(u not in names for u in used):
                problems.append(f"{name}(…): labels {used}, Swift has {names}")
                continue
            order = [names.index(u) for u in used]
            required = [p for p, has_default in params if not has_default]
            if order != sorted(order) or any(r not in used for r in required):
                problems.append(f"{name}(…): labels {used} (order or required ones), Swift has {names}")
    if problems:
        sys.exit(f"{doc_path}:\n" + "\n".join(problems))
    print(f"{doc_path}: {checked} calls and records match the Swift bindings")


if __name__ == "__main__":
    main(*sys.argv[1:])
