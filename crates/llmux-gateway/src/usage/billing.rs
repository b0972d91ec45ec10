//! The billing policy for streams that end abnormally, as pure functions (see `docs/billing.md`).
//!
//! Rule: bill what the upstream would bill, never twice, never zero when tokens were generated.
//!
//! 1. Usage reported by the upstream is final and cumulative: bill it as reported. A reported
//!    0 is replaced by an estimate only where the stream proves it wrong (output streamed but 0
//!    output tokens reported; a 0-token prompt), and the record is marked `usage_estimated`.
//! 2. No usage reported and output was streamed (finished without a usage event, client
//!    disconnect, upstream error after 200): prompt estimate + output estimate from the
//!    streamed text (`llmux_core::tokens::estimate_text`), marked `usage_estimated`.
//! 3. No usage reported and no output:
//!    - the stream finished normally (an empty answer): the prompt estimate, estimated;
//!    - the client disconnected: the prompt estimate, estimated (the upstream has in general
//!      read, and will bill, the prompt by then);
//!    - the upstream failed: 0 tokens — an upstream that errors before any output bills the
//!      prompt only when it says so, and then rule 1 applies.
//!
//! A client disconnect always sets `cancelled`. "Never twice" is held by calling [`bill`] once
//! per request (the usage guard) and by the store's idempotency on `request_id`.

use llmux_core::Usage;

/// Output streamed so far, counted incrementally so the text itself need not be kept.
///
/// The count equals `estimate_text` of the concatenated text: ASCII characters / 4 (rounded
/// up) plus one token per other character.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputTally {
    ascii: u64,
    other: u64,
    reasoning_ascii: u64,
    reasoning_other: u64,
}

fn count(text: &str) -> (u64, u64) {
    let ascii = text.bytes().filter(u8::is_ascii).count() as u64;
    let other = text.chars().count() as u64 - ascii;
    (ascii, other)
}

impl OutputTally {
    /// Adds answer text or tool-call fragments (name, arguments).
    pub fn push(&mut self, text: &str) {
        let (a, o) = count(text);
        self.ascii += a;
        self.other += o;
    }

    /// Adds reasoning text (counted as output, and as reasoning).
    pub fn push_reasoning(&mut self, text: &str) {
        let (a, o) = count(text);
        self.reasoning_ascii += a;
        self.reasoning_other += o;
    }

    /// Estimated output tokens, reasoning included.
    pub fn tokens(&self) -> u64 {
        (self.ascii + self.reasoning_ascii).div_ceil(4) + self.other + self.reasoning_other
    }

    /// Estimated reasoning tokens.
    pub fn reasoning_tokens(&self) -> u64 {
        self.reasoning_ascii.div_ceil(4) + self.reasoning_other
    }

    /// True when nothing was streamed.
    pub fn is_empty(&self) -> bool {
        self.tokens() == 0
    }
}

/// How a request's stream ended, as seen by the gateway.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamOutcome {
    /// The last usage the upstream reported (cumulative), if any.
    pub reported: Option<Usage>,
    /// Output streamed to the client so far.
    pub output: OutputTally,
    /// Estimated prompt tokens (`llmux_core::tokens` heuristic, without the output reserve).
    pub prompt_estimate: u64,
    /// The client went away before the end.
    pub client_disconnected: bool,
    /// The upstream failed after the response had started (HTTP 200 sent).
    pub upstream_error: bool,
    /// The upstream finished the stream normally.
    pub finished: bool,
}

/// What to record for a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BilledUsage {
    /// Input tokens to bill.
    pub input_tokens: u64,
    /// Output tokens to bill (reasoning included).
    pub output_tokens: u64,
    /// Cached input tokens (within `input_tokens`).
    pub cached_tokens: u64,
    /// Reasoning tokens (within `output_tokens`).
    pub reasoning_tokens: u64,
    /// Some count is an estimate.
    pub usage_estimated: bool,
    /// The client disconnected.
    pub cancelled: bool,
}

impl BilledUsage {
    /// Input + output, the tokens charged against budgets.
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Applies the billing policy (module docs) to one request's outcome.
pub fn bill(o: &StreamOutcome) -> BilledUsage {
    let cancelled = o.client_disconnected;
    if let Some(u) = &o.reported {
        let mut b = BilledUsage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_tokens: u.cached_tokens.unwrap_or(0),
            reasoning_tokens: u.reasoning_tokens.unwrap_or(0),
            usage_estimated: false,
            cancelled,
        };
        if b.output_tokens == 0 && !o.output.is_empty() {
            b.output_tokens = o.output.tokens();
            b.reasoning_tokens = o.output.reasoning_tokens();
            b.usage_estimated = true;
        }
        if b.input_tokens == 0 && o.prompt_estimate > 0 {
            b.input_tokens = o.prompt_estimate;
            b.usage_estimated = true;
        }
        b.cached_tokens = b.cached_tokens.min(b.input_tokens);
        b.reasoning_tokens = b.reasoning_tokens.min(b.output_tokens);
        return b;
    }
    if !o.output.is_empty() {
        return BilledUsage {
            input_tokens: o.prompt_estimate,
            output_tokens: o.output.tokens(),
            cached_tokens: 0,
            reasoning_tokens: o.output.reasoning_tokens(),
            usage_estimated: true,
            cancelled,
        };
    }
    let bills_prompt = o.client_disconnected || (o.finished && !o.upstream_error);
    BilledUsage {
        input_tokens: if bills_prompt { o.prompt_estimate } else { 0 },
        usage_estimated: bills_prompt && o.prompt_estimate > 0,
        cancelled,
        ..BilledUsage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmux_core::tokens::estimate_text;

    fn tally(text: &str, reasoning: &str) -> OutputTally {
        let mut t = OutputTally::default();
        // Split inside the text to prove the count is additive.
        let mid = text
            .char_indices()
            .nth(text.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        t.push(&text[..mid]);
        t.push(&text[mid..]);
        t.push_reasoning(reasoning);
        t
    }

    #[test]
    fn tally_matches_the_core_estimate_of_the_whole_text() {
        for (text, reasoning) in [("hello world!", ""), ("你好 world", "think"), ("", "")] {
            let t = tally(text, reasoning);
            assert_eq!(t.tokens(), estimate_text(&format!("{text}{reasoning}")));
            assert_eq!(t.reasoning_tokens(), estimate_text(reasoning));
        }
    }

    struct Case {
        name: &'static str,
        reported: Option<Usage>,
        text: &'static str,
        disconnected: bool,
        error: bool,
        finished: bool,
        /// input, output, estimated, cancelled
        want: (u64, u64, bool, bool),
    }

    #[test]
    fn policy_table() {
        let usage = |i, o| Some(Usage::new(i, o));
        // "abcdefgh" = 2 estimated tokens; prompt estimate = 50.
        let cases = [
            Case {
                name: "normal, usage reported",
                reported: usage(40, 7),
                text: "abcdefgh",
                disconnected: false,
                error: false,
                finished: true,
                want: (40, 7, false, false),
            },
            Case {
                name: "finished without usage",
                reported: None,
                text: "abcdefgh",
                disconnected: false,
                error: false,
                finished: true,
                want: (50, 2, true, false),
            },
            Case {
                name: "client disconnect mid-stream, no usage",
                reported: None,
                text: "abcdefgh",
                disconnected: true,
                error: false,
                finished: false,
                want: (50, 2, true, true),
            },
            Case {
                name: "client disconnect after usage reported",
                reported: usage(40, 9),
                text: "abcdefgh",
                disconnected: true,
                error: false,
                finished: false,
                want: (40, 9, false, true),
            },
            Case {
                name: "client disconnect before any output",
                reported: None,
                text: "",
                disconnected: true,
                error: false,
                finished: false,
                want: (50, 0, true, true),
            },
            Case {
                name: "upstream error after output, no usage",
                reported: None,
                text: "abcdefgh",
                disconnected: false,
                error: true,
                finished: false,
                want: (50, 2, true, false),
            },
            Case {
                name: "upstream error before output, no usage",
                reported: None,
                text: "",
                disconnected: false,
                error: true,
                finished: false,
                want: (0, 0, false, false),
            },
            Case {
                name: "upstream error before output, prompt reported",
                reported: usage(40, 0),
                text: "",
                disconnected: false,
                error: true,
                finished: false,
                want: (40, 0, false, false),
            },
            Case {
                name: "empty answer, no usage",
                reported: None,
                text: "",
                disconnected: false,
                error: false,
                finished: true,
                want: (50, 0, true, false),
            },
            Case {
                name: "usage says 0 output but text streamed",
                reported: usage(40, 0),
                text: "abcdefgh",
                disconnected: false,
                error: false,
                finished: true,
                want: (40, 2, true, false),
            },
            Case {
                name: "usage says 0 input",
                reported: usage(0, 7),
                text: "abcdefgh",
                disconnected: false,
                error: false,
                finished: true,
                want: (50, 7, true, false),
            },
        ];
        for c in cases {
            let b = bill(&StreamOutcome {
                reported: c.reported,
                output: tally(c.text, ""),
                prompt_estimate: 50,
                client_disconnected: c.disconnected,
                upstream_error: c.error,
                finished: c.finished,
            });
            assert_eq!(
                (
                    b.input_tokens,
                    b.output_tokens,
                    b.usage_estimated,
                    b.cancelled
                ),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn never_zero_when_tokens_were_generated() {
        for (reported, disconnected, error, finished) in [
            (None, true, false, false),
            (None, false, true, false),
            (None, false, false, true),
            (Some(Usage::new(0, 0)), false, true, false),
        ] {
            let b = bill(&StreamOutcome {
                reported,
                output: tally("generated text", "and some thoughts"),
                prompt_estimate: 10,
                client_disconnected: disconnected,
                upstream_error: error,
                finished,
            });
            assert!(b.output_tokens > 0 && b.usage_estimated, "{b:?}");
            assert!(b.reasoning_tokens > 0 && b.reasoning_tokens <= b.output_tokens);
        }
    }

    #[test]
    fn reported_cached_and_reasoning_counts_are_kept() {
        let mut u = Usage::new(100, 30);
        u.cached_tokens = Some(60);
        u.reasoning_tokens = Some(20);
        let b = bill(&StreamOutcome {
            reported: Some(u),
            finished: true,
            ..Default::default()
        });
        assert_eq!(
            (b.cached_tokens, b.reasoning_tokens, b.total()),
            (60, 20, 130)
        );
    }
}
