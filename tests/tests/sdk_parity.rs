//! The SDKs' parity table (`docs/sdk/parity.md`) against the code: every
//! public call of the client core has a row; each binding's name in a row is
//! one that binding exports (read from its source: `sdk-wasm/src/client.rs`
//! for JavaScript, `sdk-mobile/src/client.rs` for Swift, Kotlin and Python,
//! whose names uniffi derives from one Rust name); every call a binding
//! exports has a row; a `—` carries a note saying why. The same for events.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `pub fn`s of the `impl` blocks whose first line is `header`, each with
/// the attribute and doc lines written above it.
fn methods(path: &str, header: &str) -> Vec<(String, String)> {
    let src = read(path);
    let mut out = Vec::new();
    let mut inside = false;
    let mut above = String::new();
    for line in src.lines() {
        if line == header {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if line == "}" {
            inside = false;
            continue;
        }
        let signature = line
            .strip_prefix("    pub fn ")
            .or_else(|| line.strip_prefix("    pub async fn "));
        match signature {
            Some(rest) => {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push((name, std::mem::take(&mut above)));
            }
            None if line == "    }" => above.clear(),
            None => {
                above.push_str(line);
                above.push('\n');
            }
        }
    }
    assert!(!out.is_empty(), "no `{header}` methods in {path}");
    out
}

/// The variants of `enum_header`'s enum (lines `    Name` at one indent).
fn variants(path: &str, enum_header: &str) -> Vec<String> {
    let src = read(path);
    let start = src
        .find(enum_header)
        .unwrap_or_else(|| panic!("{enum_header} in {path}"));
    src[start + enum_header.len()..]
        .lines()
        .take_while(|l| *l != "}")
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(|l| {
            l.chars()
                .take_while(|c| c.is_alphanumeric())
                .collect::<String>()
        })
        .collect()
}

/// wasm-bindgen's JavaScript name: `js_name = …` above the method, else the Rust name.
fn js_name(rust: &str, above: &str) -> String {
    match above.split("js_name = ").nth(1) {
        Some(rest) => rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect(),
        None => rust.to_owned(),
    }
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    for (i, part) in snake.split('_').enumerate() {
        let mut chars = part.chars();
        if i > 0 {
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
            }
        }
        out.extend(chars);
    }
    out
}

fn upper_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The rows of the table under `heading`: cells without backticks; `—` as None.
fn table(doc: &str, heading: &str) -> Vec<Vec<Option<String>>> {
    let start = doc.find(heading).unwrap_or_else(|| panic!("{heading}"));
    doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| {
                    let c = c.trim().trim_matches('`');
                    (c != "—").then(|| c.to_owned())
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_call_is_in_every_sdk_or_says_why_not() {
    let doc = read("docs/sdk/parity.md");
    let rows = table(&doc, "## Calls");
    let core: BTreeSet<String> = ["client.rs", "calls.rs", "people.rs", "uploads.rs"]
        .iter()
        .flat_map(|f| methods(&format!("sdk-core/src/{f}"), "impl Client {"))
        .map(|(name, _)| name)
        .collect();
    let js: BTreeSet<String> = ["client.rs", "files.rs"]
        .iter()
        .flat_map(|f| methods(&format!("sdk-wasm/src/{f}"), "impl JsClient {"))
        .map(|(name, above)| js_name(&name, &above))
        .collect();
    let mobile: BTreeSet<String> = ["client.rs", "files.rs"]
        .iter()
        .flat_map(|f| methods(&format!("sdk-mobile/src/{f}"), "impl Client {"))
        .map(|(name, _)| name)
        .collect();

    let mut problems = Vec::new();
    let (mut seen_core, mut seen_js, mut seen_mobile) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for row in &rows {
        let [rust, js_cell, swift, kotlin, python, note] = &row[..] else {
            problems.push(format!("a row without six cells: {row:?}"));
            continue;
        };
        let what = rust.clone().unwrap_or_else(|| format!("{js_cell:?}"));
        let has_note = note.as_deref().is_some_and(|n| !n.is_empty());
        if let Some(rust) = rust {
            if !core.contains(rust) {
                problems.push(format!("{rust}: not a public call of mkondo_sdk::Client"));
            }
            seen_core.insert(rust.clone());
        }
        match js_cell.as_deref() {
            Some("Client.create") => {
                seen_js.insert("create".to_owned());
            }
            Some(name) if js.contains(name) => {
                seen_js.insert(name.to_owned());
            }
            Some(name) => problems.push(format!("{what}: JS exports no {name}")),
            None if !has_note => problems.push(format!("{what}: no JS call and no note why")),
            None => {}
        }
        // One Rust name in sdk-mobile gives all three mobile names.
        let python = python.as_deref().map(|p| match p {
            "Client(…)" => "new",
            p => p,
        });
        match python {
            Some(name) if mobile.contains(name) => {
                seen_mobile.insert(name.to_owned());
                let camel = if name == "new" {
                    "Client(…)".to_owned()
                } else {
                    lower_camel(name)
                };
                for (lang, cell) in [("Swift", swift), ("Kotlin", kotlin)] {
                    if cell.as_deref() != Some(camel.as_str()) {
                        problems.push(format!(
                            "{what}: {lang} is {camel}, the table says {cell:?}"
                        ));
                    }
                }
            }
            Some(name) => problems.push(format!("{what}: the mobile bindings export no {name}")),
            None if swift.is_some() || kotlin.is_some() => {
                problems.push(format!("{what}: Swift/Kotlin named without Python"))
            }
            None if !has_note => problems.push(format!("{what}: no mobile call and no note why")),
            None => {}
        }
    }
    for missing in core.difference(&seen_core) {
        problems.push(format!("{missing}: a core call the table does not list"));
    }
    for missing in js.difference(&seen_js) {
        problems.push(format!("JS {missing}: exported but not in the table"));
    }
    for missing in mobile.difference(&seen_mobile) {
        problems.push(format!("mobile {missing}: exported but not in the table"));
    }
    assert!(
        problems.is_empty(),
        "docs/sdk/parity.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_event_reaches_every_sdk() {
    let doc = read("docs/sdk/parity.md");
    let rows = table(&doc, "## Events");
    let core = variants("sdk-core/src/event.rs", "pub enum Event {");
    let mobile = variants("sdk-mobile/src/types.rs", "pub enum ClientEvent {");
    let wasm = read("sdk-wasm/src/convert.rs");
    let js_list = wasm
        .split("pub(crate) const EVENTS: &[&str] = &[")
        .nth(1)
        .and_then(|rest| rest.split("];").next())
        .expect("EVENTS in sdk-wasm/src/convert.rs");
    let js: Vec<String> = js_list
        .split(',')
        .map(|e| e.trim().trim_matches('"').to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    let cell = |row: &Vec<Option<String>>, i: usize| row[i].clone().unwrap_or_default();
    let listed: Vec<String> = rows.iter().map(|r| cell(r, 0)).collect();
    assert_eq!(listed, core, "every core event, in the core's order");
    for row in &rows {
        let (rust, js_name, swift, kotlin, python) = (
            cell(row, 0),
            cell(row, 1),
            cell(row, 2),
            cell(row, 3),
            cell(row, 4),
        );
        assert!(js.contains(&js_name), "{rust}: JS has no event {js_name}");
        assert!(
            mobile.contains(&kotlin),
            "{rust}: ClientEvent has no {kotlin}"
        );
        let mut lower = kotlin.clone();
        lower[..1].make_ascii_lowercase();
        assert_eq!(swift, format!(".{lower}"), "{rust}: the Swift case");
        assert_eq!(python, upper_snake(&kotlin), "{rust}: the Python variant");
    }
    assert_eq!(js.len(), rows.len(), "JS events not in the table: {js:?}");
    assert_eq!(
        mobile.len(),
        rows.len(),
        "ClientEvent variants not in the table"
    );
}
