//! The byte-pair encodings we ship: OpenAI's `cl100k_base` and `o200k_base` (ranks embedded in
//! `tiktoken-rs`, byte-identical to OpenAI's files), Qwen's vocabulary from the DashScope SDK
//! (`vocab/qwen.tiktoken`) and DeepSeek's from its published `tokenizer.json`
//! (`vocab/deepseek.tiktoken`, see `vocab/README.md` and [`super::deepseek`]), each loaded once
//! on first use.

use std::borrow::Cow;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use base64::Engine as _;
use tiktoken_rs::CoreBPE;
use unicode_normalization::UnicodeNormalization as _;

use crate::error::{Error, ErrorKind, Result};

/// A byte-pair encoding with a public reference implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// OpenAI `cl100k_base` (GPT-4, GPT-3.5-turbo, text-embedding-3).
    Cl100kBase,
    /// OpenAI `o200k_base` (GPT-4o, GPT-4.1, GPT-5, o-series).
    O200kBase,
    /// Qwen's vocabulary as the DashScope SDK's `QwenTokenizer` encodes it (NFC first, special
    /// tokens allowed in text).
    Qwen,
    /// DeepSeek's tokenizer (V4; V3 and R1 have the same vocabulary and merges) as Hugging Face
    /// `tokenizers` encodes it from DeepSeek's `tokenizer.json` (added tokens allowed in text).
    DeepSeek,
}

/// Every shipped encoding.
pub const ENCODINGS: [Encoding; 4] = [
    Encoding::Cl100kBase,
    Encoding::O200kBase,
    Encoding::Qwen,
    Encoding::DeepSeek,
];

/// The DashScope SDK's pre-tokenizer pattern (`qwen_tokenizer.PAT_STR`, dashscope 2.0.2).
pub const QWEN_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Id of Qwen's first special token, `<|endoftext|>`.
pub const QWEN_SPECIAL_START: u32 = 151_643;

/// Inputs longer than this many code points are split at line boundaries before encoding, as
/// the SDK does (`qwen_tokenizer._CHUNK_SIZE`).
const QWEN_CHUNK_CHARS: usize = 100_000;

static QWEN_RANKS: &[u8] = include_bytes!("../../vocab/qwen.tiktoken");

impl Encoding {
    /// The reference name (`cl100k_base`, `o200k_base`, `qwen`, `deepseek`).
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Cl100kBase => "cl100k_base",
            Encoding::O200kBase => "o200k_base",
            Encoding::Qwen => "qwen",
            Encoding::DeepSeek => "deepseek",
        }
    }

    /// The encoding with this reference name.
    pub fn parse(name: &str) -> Option<Encoding> {
        ENCODINGS.into_iter().find(|e| e.name() == name)
    }

    /// The size of the BPE vocabulary: token ids `0..n` are byte sequences, special and added
    /// tokens come after (DeepSeek's three sentence markers, ids 0–2, are the exception: they
    /// sit inside that range and are matched as added tokens).
    pub fn mergeable_tokens(self) -> u32 {
        match self {
            Encoding::Cl100kBase => 100_256,
            Encoding::O200kBase => 199_998,
            Encoding::Qwen => QWEN_SPECIAL_START,
            Encoding::DeepSeek => super::deepseek::DEEPSEEK_VOCAB,
        }
    }

    /// The loaded ranks (parsed once per process).
    fn bpe(self) -> Result<&'static CoreBPE> {
        match self {
            Encoding::Cl100kBase => Ok(tiktoken_rs::cl100k_base_singleton()),
            Encoding::O200kBase => Ok(tiktoken_rs::o200k_base_singleton()),
            Encoding::Qwen => {
                static QWEN: OnceLock<std::result::Result<CoreBPE, String>> = OnceLock::new();
                QWEN.get_or_init(load_qwen)
                    .as_ref()
                    .map_err(|e| Error::new(ErrorKind::Internal, e.clone()))
            }
            Encoding::DeepSeek => Ok(&deepseek()?.bpe),
        }
    }

    /// Loads the ranks now, so later calls cannot fail.
    pub fn load(self) -> Result<()> {
        self.bpe().map(|_| ())
    }

    /// Token ids of `text` as the reference tokenizer produces them for raw text: OpenAI's
    /// `encode_ordinary` (special-token text is ordinary text, as the API treats user text),
    /// Qwen's SDK `encode` (NFC, specials allowed, long inputs chunked), DeepSeek's
    /// `tokenizer.json` through Hugging Face `tokenizers` (added tokens allowed, no BOS).
    pub fn encode(self, text: &str) -> Result<Vec<u32>> {
        let bpe = self.bpe()?;
        match self {
            Encoding::Cl100kBase | Encoding::O200kBase => guarded(|| bpe.encode_ordinary(text)),
            Encoding::Qwen => {
                let text: Cow<'_, str> = if unicode_normalization::is_nfc(text) {
                    Cow::Borrowed(text)
                } else {
                    Cow::Owned(text.nfc().collect())
                };
                let mut out = Vec::new();
                for chunk in qwen_chunks(&text) {
                    out.extend(guarded(|| bpe.encode_with_special_tokens(chunk))?);
                }
                Ok(out)
            }
            Encoding::DeepSeek => {
                let ds = deepseek()?;
                guarded(|| ds.encode(text))
            }
        }
    }

    /// Token ids of a rendered chat template: special-token text becomes the special token.
    pub fn encode_template(self, text: &str) -> Result<Vec<u32>> {
        match self {
            Encoding::Qwen | Encoding::DeepSeek => self.encode(text),
            Encoding::Cl100kBase | Encoding::O200kBase => {
                let bpe = self.bpe()?;
                guarded(|| bpe.encode_with_special_tokens(text))
            }
        }
    }

    /// The bytes of these token ids (not necessarily valid UTF-8 on their own).
    pub fn decode_bytes(self, tokens: &[u32]) -> Result<Vec<u8>> {
        self.bpe()?.decode_bytes(tokens).map_err(|e| {
            Error::invalid_request(format!(
                "token {} is not in the {} vocabulary",
                e.token,
                self.name()
            ))
        })
    }
}

/// Runs the tokenizer and turns a panic inside it (a regex backtrack limit on pathological
/// input) into an error instead of taking the process down.
fn guarded(f: impl FnOnce() -> Vec<u32>) -> Result<Vec<u32>> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidRequest,
            "the tokenizer could not split this text (a very long run of whitespace overflows its pre-tokenizer, as in the reference tokenizer)",
        )
    })
}

/// The SDK's `_split_text`: texts up to the chunk size pass whole; longer ones are cut into
/// lines (each line after the first keeps its leading `\n`), over-long lines into fixed-size
/// pieces, and consecutive pieces are packed into chunks of at most the chunk size.
fn qwen_chunks(text: &str) -> Vec<&str> {
    if text.chars().count() <= QWEN_CHUNK_CHARS {
        return vec![text];
    }
    // Pieces as byte ranges with their length in code points.
    let mut pieces: Vec<(usize, usize, usize)> = Vec::new();
    let mut line_start = 0;
    let push_line = |start: usize, end: usize, pieces: &mut Vec<(usize, usize, usize)>| {
        let line = &text[start..end];
        let n = line.chars().count();
        if n <= QWEN_CHUNK_CHARS {
            pieces.push((start, end, n));
            return;
        }
        let mut piece_start = start;
        let mut count = 0;
        for (off, _) in line.char_indices() {
            if count == QWEN_CHUNK_CHARS {
                pieces.push((piece_start, start + off, count));
                piece_start = start + off;
                count = 0;
            }
            count += 1;
        }
        pieces.push((piece_start, end, count));
    };
    for (i, b) in text.bytes().enumerate() {
        // A new line starts at each `\n` (which belongs to the line it opens).
        if b == b'\n' && i > 0 {
            push_line(line_start, i, &mut pieces);
            line_start = i;
        }
    }
    push_line(line_start, text.len(), &mut pieces);

    let mut chunks = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    let mut current_len = 0;
    for (start, end, n) in pieces {
        match current {
            Some((s, _)) if current_len + n <= QWEN_CHUNK_CHARS => {
                current = Some((s, end));
                current_len += n;
            }
            Some((s, e)) => {
                chunks.push(&text[s..e]);
                current = Some((start, end));
                current_len = n;
            }
            None => {
                current = Some((start, end));
                current_len = n;
            }
        }
    }
    if let Some((s, e)) = current {
        chunks.push(&text[s..e]);
    }
    chunks
}

/// DeepSeek's tokenizer (loaded once per process).
fn deepseek() -> Result<&'static super::deepseek::DeepSeek> {
    static DEEPSEEK: OnceLock<std::result::Result<super::deepseek::DeepSeek, String>> =
        OnceLock::new();
    DEEPSEEK
        .get_or_init(super::deepseek::load)
        .as_ref()
        .map_err(|e| Error::new(ErrorKind::Internal, e.clone()))
}

/// The ranks of a tiktoken-format file (`base64(bytes) rank` per line); `name` is for errors.
pub(super) fn parse_ranks(
    file: &[u8],
    name: &str,
) -> std::result::Result<std::collections::HashMap<Vec<u8>, u32>, String> {
    let mut ranks = std::collections::HashMap::default();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in file.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let bad = || format!("{name} line {}: malformed", n + 1);
        let mut parts = line.split(|&b| b == b' ');
        let (Some(token), Some(rank), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let token = base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|_| bad())?;
        let rank: u32 = std::str::from_utf8(rank)
            .ok()
            .and_then(|r| r.parse().ok())
            .ok_or_else(bad)?;
        if !seen.insert(rank) {
            return Err(format!("{name}: rank {rank} appears twice"));
        }
        if ranks.insert(token, rank).is_some() {
            return Err(format!("{name} line {}: the token appears twice", n + 1));
        }
    }
    Ok(ranks)
}

fn load_qwen() -> std::result::Result<CoreBPE, String> {
    let ranks = parse_ranks(QWEN_RANKS, "vocab/qwen.tiktoken")?;
    let mut specials = std::collections::HashMap::new();
    let names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .into_iter()
        .map(str::to_owned)
        .chain((0..205).map(|i| format!("<|extra_{i}|>")));
    for (id, name) in (QWEN_SPECIAL_START..).zip(names) {
        specials.insert(name, id);
    }
    CoreBPE::new(
        ranks.into_iter().collect(),
        specials.into_iter().collect(),
        QWEN_PATTERN,
    )
    .map_err(|e| format!("qwen tokenizer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen_loads_every_rank_and_special() {
        let e = Encoding::Qwen;
        e.load().unwrap();
        assert_eq!(e.encode("<|im_start|>").unwrap(), vec![151_644]);
        assert_eq!(e.encode("<|extra_204|>").unwrap(), vec![151_643 + 3 + 204]);
        assert!(!e
            .decode_bytes(&[e.mergeable_tokens() - 1])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn qwen_normalizes_to_nfc_first() {
        let composed = Encoding::Qwen.encode("caf\u{e9}").unwrap();
        let decomposed = Encoding::Qwen.encode("cafe\u{301}").unwrap();
        assert_eq!(composed, decomposed);
    }

    #[test]
    fn long_texts_are_chunked_like_the_sdk() {
        let short = "a\nb";
        assert_eq!(qwen_chunks(short), vec![short]);
        let line = "x".repeat(60_000);
        let text = format!("{line}\n{line}\n{line}");
        let chunks = qwen_chunks(&text);
        assert_eq!(chunks.concat(), text);
        assert_eq!(chunks.len(), 3);
        assert!(chunks[1].starts_with('\n'));
        let long = "y".repeat(250_000);
        let chunks = qwen_chunks(&long);
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [100_000, 100_000, 50_000]
        );
    }

    #[test]
    fn openai_raw_text_treats_special_tokens_as_text() {
        let ids = Encoding::Cl100kBase.encode("<|endoftext|>").unwrap();
        assert!(ids.len() > 1);
        let ids = Encoding::Cl100kBase
            .encode_template("<|endoftext|>")
            .unwrap();
        assert_eq!(ids, vec![100_257]);
    }
}
