//! Batch output: OpenAI Batch API output lines, the append-only writer, and reading a previous
//! run's output back to resume it.
//!
//! A line is `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}`.
//! A success carries an OpenAI `chat.completion` body and `"error": null`. A failure (after the
//! client's retries) is an output line too, as in OpenAI's Batch API, with `error` set to
//! `{"code", "message"}`; when the upstream answered, `response` keeps its status and an OpenAI
//! error body, otherwise it is `null`. (OpenAI leaves `error` null for HTTP-level failures; we
//! always set it, so "did this line fail" is one field.)
//!
//! Durability: each line goes out in one `write` of the whole line and its newline, so a killed
//! process leaves at most one partial last line, which [`Resume::load`] cuts off.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use llmux_core::{ChatResponse, ErrorKind, Role};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::{CliError, Result};

/// One output line, its fields in OpenAI's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputLine {
    /// This line's id (`batch_req_…`).
    pub id: String,
    /// The input line's `custom_id`.
    pub custom_id: String,
    /// `{"status_code", "request_id", "body"}`, or `null` when no upstream answered.
    pub response: Value,
    /// `{"code", "message"}` for a failure, `null` for a success.
    pub error: Value,
}

/// An output line for a success.
pub fn success_line(id: &str, custom_id: &str, resp: &ChatResponse) -> OutputLine {
    OutputLine {
        id: id.to_owned(),
        custom_id: custom_id.to_owned(),
        response: json!({
            "status_code": 200,
            "request_id": resp.request_id.as_deref().unwrap_or(resp.id.as_str()),
            "body": chat_completion(resp),
        }),
        error: Value::Null,
    }
}

/// An output line for a failure.
pub fn failure_line(id: &str, custom_id: &str, err: &llmux_core::Error) -> OutputLine {
    let message = crate::error::describe(err);
    let code = err
        .upstream_code()
        .map_or_else(|| err.kind().as_str().to_owned(), str::to_owned);
    let response = err.upstream_status().map(|status| {
        json!({
            "status_code": status,
            "request_id": err.request_id(),
            "body": {"error": {
                "message": err.message(),
                "type": error_type(err.kind()),
                "param": null,
                "code": err.upstream_code(),
            }},
        })
    });
    OutputLine {
        id: id.to_owned(),
        custom_id: custom_id.to_owned(),
        response: response.unwrap_or(Value::Null),
        error: json!({"code": code, "message": message}),
    }
}

/// OpenAI's error `type` for a kind.
fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::RateLimited | ErrorKind::QuotaExhausted => "rate_limit_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::PermissionDenied => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::InvalidRequest
        | ErrorKind::Unsupported
        | ErrorKind::ContextLengthExceeded
        | ErrorKind::ContentFiltered => "invalid_request_error",
        ErrorKind::Timeout
        | ErrorKind::Connect
        | ErrorKind::UpstreamServer
        | ErrorKind::UpstreamProtocol
        | ErrorKind::CircuitOpen
        | ErrorKind::Cancelled
        | ErrorKind::Config
        | ErrorKind::Internal => "server_error",
    }
}

/// A core response as an OpenAI `chat.completion` object.
pub fn chat_completion(resp: &ChatResponse) -> Value {
    let choices: Vec<Value> = resp
        .choices
        .iter()
        .map(|c| {
            let m = &c.message;
            let mut msg = Map::new();
            msg.insert("role".into(), json!(Role::Assistant.as_str()));
            let text = m.content.text();
            msg.insert(
                "content".into(),
                if text.is_empty() && !m.tool_calls.is_empty() {
                    Value::Null
                } else {
                    json!(text)
                },
            );
            if let Some(r) = &m.reasoning {
                msg.insert("reasoning_content".into(), json!(r));
            }
            if !m.tool_calls.is_empty() {
                let calls: Vec<Value> = m
                    .tool_calls
                    .iter()
                    .map(|t| {
                        json!({"id": t.id, "type": "function",
                               "function": {"name": t.name, "arguments": t.arguments}})
                    })
                    .collect();
                msg.insert("tool_calls".into(), json!(calls));
            }
            json!({
                "index": c.index,
                "message": msg,
                "finish_reason": c.finish_reason.as_ref().map(|f| f.as_str()),
                "logprobs": null,
            })
        })
        .collect();
    let mut body = json!({
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created.unwrap_or(0),
        "model": resp.model,
        "choices": choices,
    });
    if let Some(u) = &resp.usage {
        let mut usage = json!({
            "prompt_tokens": u.input_tokens,
            "completion_tokens": u.output_tokens,
            "total_tokens": u.total_tokens,
        });
        if let Some(c) = u.cached_tokens {
            usage["prompt_tokens_details"] = json!({"cached_tokens": c});
        }
        if let Some(r) = u.reasoning_tokens {
            usage["completion_tokens_details"] = json!({"reasoning_tokens": r});
        }
        body["usage"] = usage;
    }
    body
}

/// What a previous run left in the output file.
#[derive(Debug, Default)]
pub struct Resume {
    /// `custom_id`s that have their line (successes, and failures unless retried).
    pub done: HashSet<String>,
    /// Failed lines kept as done (only when failures are not being retried).
    pub failed_kept: usize,
    /// Failed lines dropped from the file so they run again (`--retry-failed`).
    pub failed_dropped: usize,
    /// Bytes of a partial last line that were cut off.
    pub truncated_bytes: usize,
}

/// Whether an output line records a failure.
fn is_failure(v: &Value) -> bool {
    !v.get("error").is_none_or(Value::is_null)
}

impl Resume {
    /// Reads `path` (absent = fresh start), cuts a partial last line off the file, and, with
    /// `retry_failed`, rewrites the file without its failed lines (via a temporary file and a
    /// rename, so a crash leaves either the old or the new file). With `repair` false the file
    /// is only read (`--dry-run`). A complete line that is not a batch output line is an error:
    /// the file is not ours to append to.
    pub fn load(path: &Path, retry_failed: bool, repair: bool) -> Result<Resume> {
        let mut file = match OpenOptions::new().read(true).write(repair).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Resume::default()),
            Err(e) => return Err(CliError::io(format!("opening {}", path.display()), e)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| CliError::io(format!("reading {}", path.display()), e))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut resume = Resume {
            truncated_bytes: bytes.len() - complete,
            ..Resume::default()
        };
        if repair && resume.truncated_bytes > 0 {
            file.set_len(complete as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| CliError::io(format!("truncating {}", path.display()), e))?;
        }
        let mut kept = Vec::with_capacity(complete);
        for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v: Value = serde_json::from_slice(line).map_err(|_| not_ours(path, i + 1))?;
            let id = v
                .get("custom_id")
                .and_then(Value::as_str)
                .ok_or_else(|| not_ours(path, i + 1))?;
            if is_failure(&v) {
                if retry_failed {
                    resume.failed_dropped += 1;
                    continue;
                }
                resume.failed_kept += 1;
            }
            resume.done.insert(id.to_owned());
            kept.extend_from_slice(line);
            kept.push(b'\n');
        }
        if repair && resume.failed_dropped > 0 {
            replace_contents(path, &kept)?;
        }
        Ok(resume)
    }
}

fn not_ours(path: &Path, line: usize) -> CliError {
    CliError::msg(format!(
        "{} line {line} is not a batch output line (no `custom_id`); \
         choose another -o file instead of appending to this one",
        path.display()
    ))
}

fn replace_contents(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| CliError::io(format!("rewriting {}", path.display()), e))
}

/// Appends output lines: one `write` per line, `fsync` every [`Writer::SYNC_EVERY`] lines and
/// when the run ends ([`Writer::sync`]).
#[derive(Debug)]
pub struct Writer {
    file: File,
    path: PathBuf,
    unsynced: usize,
}

impl Writer {
    /// Lines between two `fsync`s.
    pub const SYNC_EVERY: usize = 64;

    /// Opens `path` for appending, creating it.
    pub fn open(path: &Path) -> Result<Writer> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| CliError::io(format!("opening {}", path.display()), e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| CliError::io(format!("opening {}", path.display()), e))?;
        Ok(Writer {
            file,
            path: path.to_owned(),
            unsynced: 0,
        })
    }

    /// Appends one line.
    pub fn write(&mut self, line: &OutputLine) -> Result<()> {
        let mut buf = serde_json::to_string(line)
            .map_err(|e| CliError::msg(format!("cannot encode an output line: {e}")))?;
        buf.push('\n');
        self.file
            .write_all(buf.as_bytes())
            .map_err(|e| CliError::io(format!("writing {}", self.path.display()), e))?;
        self.unsynced += 1;
        if self.unsynced >= Self::SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes what was written to disk.
    pub fn sync(&mut self) -> Result<()> {
        self.unsynced = 0;
        self.file
            .sync_data()
            .map_err(|e| CliError::io(format!("syncing {}", self.path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmux_core::{Choice, Error, FinishReason, Message, ToolCall, Usage};

    fn response() -> ChatResponse {
        let mut m = Message::assistant("");
        m.tool_calls.push(ToolCall {
            id: "c1".into(),
            name: "f".into(),
            arguments: "{\"a\":1}".into(),
        });
        ChatResponse {
            id: "chatcmpl-1".into(),
            model: "gpt-4o".into(),
            created: Some(5),
            choices: vec![Choice {
                index: 0,
                message: m,
                finish_reason: Some(FinishReason::ToolCalls),
            }],
            usage: Some(Usage::new(3, 4)),
            request_id: Some("req-9".into()),
        }
    }

    #[test]
    fn success_lines_carry_an_openai_chat_completion() {
        let line = success_line("batch_req_1", "a", &response());
        let text = serde_json::to_string(&line).unwrap();
        assert!(
            text.starts_with(r#"{"id":"batch_req_1","custom_id":"a","response":"#),
            "{text}"
        );
        assert!(text.ends_with(r#","error":null}"#), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["custom_id"], "a");
        assert_eq!(v["error"], Value::Null);
        assert_eq!(v["response"]["status_code"], 200);
        assert_eq!(v["response"]["request_id"], "req-9");
        let body = &v["response"]["body"];
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            body["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "f"
        );
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(body["usage"]["total_tokens"], 7);
    }

    #[test]
    fn failure_lines_keep_the_upstream_status_when_there_was_one() {
        let e = Error::new(ErrorKind::RateLimited, "slow down")
            .with_provider("openai")
            .with_status(429)
            .with_code("rate_limit_exceeded");
        let v = serde_json::to_value(failure_line("x", "a", &e)).unwrap();
        assert_eq!(v["response"]["status_code"], 429);
        assert_eq!(v["response"]["body"]["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("slow down"));
        let v = serde_json::to_value(failure_line(
            "x",
            "a",
            &Error::new(ErrorKind::Connect, "refused"),
        ))
        .unwrap();
        assert_eq!(v["response"], Value::Null);
        assert_eq!(v["error"]["code"], "connect");
    }

    fn write_file(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("out.jsonl");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn resume_cuts_a_partial_last_line_and_keeps_failures_unless_retried() {
        let dir = tempfile::tempdir().unwrap();
        let ok = r#"{"custom_id":"a","response":{},"error":null}"#;
        let bad = r#"{"custom_id":"b","response":null,"error":{"code":"x","message":"y"}}"#;
        let text = format!("{ok}\n{bad}\n{{\"custom_id\":\"c\",\"resp");
        let p = write_file(dir.path(), &text);
        let r = Resume::load(&p, false, true).unwrap();
        assert_eq!(r.done.len(), 2);
        assert_eq!((r.failed_kept, r.failed_dropped), (1, 0));
        assert!(r.truncated_bytes > 0);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{ok}\n{bad}\n")
        );

        let r = Resume::load(&p, true, true).unwrap();
        assert_eq!(r.done.iter().collect::<Vec<_>>(), ["a"]);
        assert_eq!(
            (r.failed_kept, r.failed_dropped, r.truncated_bytes),
            (0, 1, 0)
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("{ok}\n"));
    }

    #[test]
    fn resume_refuses_a_file_that_is_not_batch_output() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(dir.path(), "hello\n");
        let err = Resume::load(&p, false, true).unwrap_err().to_string();
        assert!(err.contains("line 1 is not a batch output line"), "{err}");
        let missing = dir.path().join("none.jsonl");
        assert!(Resume::load(&missing, false, true).unwrap().done.is_empty());
    }

    #[test]
    fn writer_appends_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(dir.path(), "{\"custom_id\":\"a\",\"error\":null}\n");
        let mut w = Writer::open(&p).unwrap();
        w.write(&OutputLine {
            id: "x".into(),
            custom_id: "b".into(),
            response: Value::Null,
            error: Value::Null,
        })
        .unwrap();
        w.sync().unwrap();
        let r = Resume::load(&p, false, true).unwrap();
        assert_eq!(r.done.len(), 2);
    }
}
