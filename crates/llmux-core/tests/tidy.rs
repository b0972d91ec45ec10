//! Tidiness checks over the whole workspace: every module says what it is for in a `//!` line,
//! and every registered provider has a row in docs/providers.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_opens_with_a_doc_line() {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    assert!(files.len() > 10);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .unwrap()
                .trim_start()
                .starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a `//!` first line: {missing:?}"
    );
}

#[test]
fn every_registered_provider_has_a_docs_row() {
    let docs = std::fs::read_to_string(workspace().join("docs/providers.md")).unwrap();
    for spec in llmux_core::providers::REGISTRY {
        assert!(
            docs.contains(&format!("| `{}` |", spec.id)),
            "docs/providers.md has no row for `{}`",
            spec.id
        );
    }
}
