//! Rendering an answer as it streams: text to stdout, reasoning to stderr, tool calls and usage
//! at the end, or JSON for scripts.

use std::io::{self, Write};

use llmux_core::{ChatResponse, StreamAccumulator, StreamEvent, Usage};

use crate::error::{CliError, Result};

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// What stdout gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The answer text as it arrives, then tool calls as `tool_call NAME ARGS` lines.
    Text,
    /// One JSON object per stream event, one per line, as they arrive (`--json-events`).
    Events,
    /// The complete `ChatResponse` as one JSON document once the answer is complete (`--json`).
    Json,
}

/// How to render.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    /// What stdout gets.
    pub mode: Mode,
    /// Dim reasoning text (stderr is a terminal).
    pub dim: bool,
    /// Print token usage to stderr at the end (`--usage`, `-v`).
    pub usage: bool,
}

/// Renders one answer, event by event, and folds the events into the final response.
pub struct Renderer<O: Write, E: Write> {
    out: O,
    err: E,
    style: Style,
    acc: StreamAccumulator,
    /// stdout has text not yet ended by a newline.
    out_open: bool,
    /// stderr is in the middle of reasoning text.
    in_reasoning: bool,
    /// stderr has reasoning text not yet ended by a newline.
    err_open: bool,
}

fn out_err(e: io::Error) -> CliError {
    CliError::io("writing to stdout", e)
}

fn err_err(e: io::Error) -> CliError {
    CliError::io("writing to stderr", e)
}

impl<O: Write, E: Write> Renderer<O, E> {
    /// A renderer writing to `out` (the answer) and `err` (reasoning, usage).
    pub fn new(out: O, err: E, style: Style) -> Self {
        Renderer {
            out,
            err,
            style,
            acc: StreamAccumulator::new(),
            out_open: false,
            in_reasoning: false,
            err_open: false,
        }
    }

    /// Handles one event: checks it against the stream invariants and prints what it adds.
    pub fn event(&mut self, ev: &StreamEvent) -> Result<()> {
        self.acc.push(ev)?;
        match self.style.mode {
            Mode::Json => Ok(()),
            Mode::Events => {
                let line = serde_json::to_string(ev)
                    .map_err(|e| CliError::msg(format!("cannot encode a stream event: {e}")))?;
                writeln!(self.out, "{line}").map_err(out_err)?;
                self.out.flush().map_err(out_err)
            }
            Mode::Text => match ev {
                StreamEvent::TextDelta { text } => self.text_delta(text),
                StreamEvent::ReasoningDelta { text } => self.reasoning_delta(text),
                _ => Ok(()),
            },
        }
    }

    fn text_delta(&mut self, text: &str) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        self.end_reasoning()?;
        self.out.write_all(text.as_bytes()).map_err(out_err)?;
        self.out.flush().map_err(out_err)?;
        self.out_open = !text.ends_with('\n');
        Ok(())
    }

    fn reasoning_delta(&mut self, text: &str) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        if !self.in_reasoning && self.style.dim {
            self.err.write_all(DIM.as_bytes()).map_err(err_err)?;
        }
        self.in_reasoning = true;
        self.err.write_all(text.as_bytes()).map_err(err_err)?;
        self.err.flush().map_err(err_err)?;
        self.err_open = !text.ends_with('\n');
        Ok(())
    }

    fn end_reasoning(&mut self) -> Result<()> {
        if !self.in_reasoning {
            return Ok(());
        }
        self.in_reasoning = false;
        if self.style.dim {
            self.err.write_all(RESET.as_bytes()).map_err(err_err)?;
        }
        if self.err_open {
            self.err.write_all(b"\n").map_err(err_err)?;
            self.err_open = false;
        }
        self.err.flush().map_err(err_err)
    }

    /// Ends open lines (after a complete answer, an error or a cancellation), so whatever comes
    /// next starts on a fresh line. Safe to call more than once.
    pub fn close(&mut self) -> Result<()> {
        self.end_reasoning()?;
        if self.out_open {
            self.out.write_all(b"\n").map_err(out_err)?;
            self.out_open = false;
        }
        self.out.flush().map_err(out_err)
    }

    /// True in [`Mode::Json`]: a complete (non-streamed) response is printed as the vendor's
    /// answer was parsed, with [`Self::response`], rather than replayed as events.
    pub fn prints_whole_response(&self) -> bool {
        self.style.mode == Mode::Json
    }

    /// Prints a complete response the way [`Self::finish`] would have.
    pub fn response(&mut self, resp: ChatResponse) -> Result<ChatResponse> {
        self.close()?;
        self.epilogue(&resp)?;
        Ok(resp)
    }

    /// The stream ended: prints tool calls, the JSON document or usage, and returns the answer.
    /// Fails when the stream stopped before `Finished`.
    pub fn finish(&mut self) -> Result<ChatResponse> {
        self.close()?;
        let resp = std::mem::take(&mut self.acc).finish()?;
        self.epilogue(&resp)?;
        Ok(resp)
    }

    fn epilogue(&mut self, resp: &ChatResponse) -> Result<()> {
        match self.style.mode {
            Mode::Text => {
                for call in resp.tool_calls() {
                    writeln!(self.out, "tool_call {} {}", call.name, call.arguments)
                        .map_err(out_err)?;
                }
            }
            Mode::Json => {
                let doc = serde_json::to_string_pretty(resp)
                    .map_err(|e| CliError::msg(format!("cannot encode the response: {e}")))?;
                writeln!(self.out, "{doc}").map_err(out_err)?;
            }
            Mode::Events => {}
        }
        self.out.flush().map_err(out_err)?;
        if self.style.usage {
            if let Some(u) = resp.usage {
                writeln!(self.err, "{}", usage_line(&u)).map_err(err_err)?;
            }
        }
        Ok(())
    }
}

/// `usage: 12 input + 3 output = 15 tokens`, with cached and reasoning counts when reported.
pub fn usage_line(u: &Usage) -> String {
    let mut s = format!(
        "usage: {} input + {} output = {} tokens",
        u.input_tokens, u.output_tokens, u.total_tokens
    );
    if let Some(c) = u.cached_tokens {
        s.push_str(&format!(", {c} cached"));
    }
    if let Some(r) = u.reasoning_tokens {
        s.push_str(&format!(", {r} reasoning"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmux_core::FinishReason;

    fn text(t: &str) -> StreamEvent {
        StreamEvent::TextDelta { text: t.into() }
    }

    fn finished() -> StreamEvent {
        StreamEvent::Finished {
            reason: FinishReason::Stop,
        }
    }

    fn render(mode: Mode, dim: bool, events: &[StreamEvent]) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let style = Style {
            mode,
            dim,
            usage: true,
        };
        let mut r = Renderer::new(&mut out, &mut err, style);
        for e in events {
            r.event(e).unwrap();
        }
        r.finish().unwrap();
        drop(r);
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn text_ends_with_exactly_one_newline() {
        let (out, _) = render(Mode::Text, false, &[text("You "), text("said"), finished()]);
        assert_eq!(out, "You said\n");
        let (out, _) = render(Mode::Text, false, &[text("line\n"), finished()]);
        assert_eq!(out, "line\n");
    }

    #[test]
    fn reasoning_goes_to_stderr_dimmed_only_when_asked() {
        let evs = [
            StreamEvent::ReasoningDelta { text: "hmm".into() },
            text("ok"),
            finished(),
        ];
        let (out, err) = render(Mode::Text, false, &evs);
        assert_eq!((out.as_str(), err.as_str()), ("ok\n", "hmm\n"));
        let (_, err) = render(Mode::Text, true, &evs);
        assert_eq!(err, format!("{DIM}hmm{RESET}\n"));
    }

    #[test]
    fn tool_calls_print_as_lines_after_the_text() {
        let evs = [
            StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("call_0".into()),
                name: Some("get_weather".into()),
                arguments: "{\"city\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                id: None,
                name: None,
                arguments: "\"x\"}".into(),
            },
            StreamEvent::Usage(Usage::new(5, 2)),
            StreamEvent::Finished {
                reason: FinishReason::ToolCalls,
            },
        ];
        let (out, err) = render(Mode::Text, false, &evs);
        assert_eq!(out, "tool_call get_weather {\"city\":\"x\"}\n");
        assert_eq!(err, "usage: 5 input + 2 output = 7 tokens\n");
    }

    #[test]
    fn json_modes_parse() {
        let evs = [text("hi"), finished()];
        let (out, _) = render(Mode::Json, false, &evs);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hi");
        let (out, _) = render(Mode::Events, false, &evs);
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["type"], "text_delta");
        assert_eq!(lines[1]["type"], "finished");
    }

    #[test]
    fn unfinished_stream_is_an_error_but_the_line_is_closed() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let style = Style {
            mode: Mode::Text,
            dim: false,
            usage: false,
        };
        let mut r = Renderer::new(&mut out, &mut err, style);
        r.event(&text("part")).unwrap();
        assert!(r.finish().is_err());
        drop(r);
        assert_eq!(String::from_utf8(out).unwrap(), "part\n");
    }
}
