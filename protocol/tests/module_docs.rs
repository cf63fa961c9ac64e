//! Every crate's module list in its root's docs (`//!` of `lib.rs`) matches its `mod` lines: each
//! declared module is named in the docs' layout (`` `name` ``, `` [`name`] `` or `` `name/` ``), and
//! each name the layout introduces as a module (`` `name`: ``, `` [`name`]: ``) is declared.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

const ROOTS: [&str; 5] =
    ["protocol/src/lib.rs", "extension/src/lib.rs", "tools/src/lib.rs", "sandbox/src/lib.rs", "benches/src/lib.rs"];

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Top-level `mod name;` / `pub mod name;` / `pub(crate) mod name;` lines.
fn declared(src: &str) -> BTreeSet<String> {
    src.lines()
        .filter_map(|l| {
            let l = l.strip_prefix("pub(crate) ").or_else(|| l.strip_prefix("pub ")).unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

/// The `//!` docs from `# Layout` to the next heading (all of them without such a heading).
fn layout(src: &str) -> String {
    let docs: Vec<&str> = src.lines().take_while(|l| l.starts_with("//!")).map(|l| l[3..].trim_start()).collect();
    let start = docs.iter().position(|l| *l == "# Layout").map_or(0, |i| i + 1);
    let end = docs[start..].iter().position(|l| l.starts_with('#')).map_or(docs.len(), |i| start + i);
    docs[start..end].join("\n")
}

/// Backticked module-like names of `text`, with whether each is followed by `:` (introduced).
fn named(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('`') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('`') else { break };
        let token = after[..close].trim_end_matches('/');
        let tail = after[close + 1..].trim_start_matches(']');
        if !token.is_empty() && token.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            out.push((token.to_owned(), tail.starts_with(':')));
        }
        rest = &after[close + 1..];
    }
    out
}

#[test]
fn every_crate_root_documents_exactly_its_modules() {
    let mut problems = Vec::new();
    for root in ROOTS {
        let src = std::fs::read_to_string(workspace().join(root)).unwrap();
        let mods = declared(&src);
        assert!(!mods.is_empty(), "{root}: no mod lines found");
        let names = named(&layout(&src));
        for m in &mods {
            if !names.iter().any(|(n, _)| n == m) {
                problems.push(format!("{root}: `mod {m}` is not in the docs' layout"));
            }
        }
        for (n, introduced) in &names {
            if *introduced && !mods.contains(n) {
                problems.push(format!("{root}: the docs introduce `{n}`, which is no module"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_can_fail() {
    let src = "//! # Layout\n//! * [`a`]: one; `gone`: old.\n//! # Other\n//! `b`\n\npub mod a;\nmod b;\n";
    assert_eq!(declared(src), ["a", "b"].map(String::from).into());
    let names = named(&layout(src));
    assert_eq!(names, vec![("a".to_owned(), true), ("gone".to_owned(), true)]);
}
