//! Server-sent events: bytes → frames, per the WHATWG event-stream grammar.
//!
//! Lines end with LF, CRLF or a lone CR; a blank line dispatches the frame; `data:` lines
//! join with `\n`; one leading space after the colon is dropped; comments (`:…`) and unknown
//! fields are kept aside or ignored. Any split of the input (inside a UTF-8 character,
//! between CR and LF) yields the same frames, because lines are decoded only when complete.

use super::Frame;
use crate::error::{Error, ErrorKind};

/// What was left when an SSE body ended.
pub type SseTail = super::Tail;

/// Incremental SSE decoder.
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    skip_lf: bool,
    frame: Frame,
    has_data: bool,
    has_fields: bool,
    frame_bytes: usize,
    max_frame: usize,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new(super::DEFAULT_MAX_FRAME)
    }
}

impl SseDecoder {
    /// A decoder that rejects frames larger than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            skip_lf: false,
            frame: Frame::default(),
            has_data: false,
            has_fields: false,
            frame_bytes: 0,
            max_frame,
        }
    }

    /// Feeds bytes; complete frames are appended to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Frame>) -> Result<(), Error> {
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while !chunk.is_empty() {
            let Some(pos) = memchr::memchr2(b'\n', b'\r', chunk) else {
                self.grow(chunk.len())?;
                self.line.extend_from_slice(chunk);
                break;
            };
            self.grow(pos)?;
            if self.line.is_empty() {
                self.on_line(&chunk[..pos], out);
            } else {
                self.line.extend_from_slice(&chunk[..pos]);
                let line = std::mem::take(&mut self.line);
                self.on_line(&line, out);
                self.line = line;
                self.line.clear();
            }
            let was_cr = chunk[pos] == b'\r';
            chunk = &chunk[pos + 1..];
            if was_cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
        }
        Ok(())
    }

    /// Ends the body: processes a partial last line and reports an undelivered frame.
    pub fn finish(&mut self) -> SseTail {
        let mut truncated = !self.line.is_empty() || self.has_fields;
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let mut sink = Vec::new();
            self.on_line(&line, &mut sink);
            truncated = true;
        }
        let frame = self.has_data.then(|| std::mem::take(&mut self.frame));
        self.reset();
        SseTail { frame, truncated }
    }

    fn grow(&mut self, n: usize) -> Result<(), Error> {
        self.frame_bytes += n;
        if self.frame_bytes > self.max_frame {
            self.frame_bytes = 0;
            return Err(Error::new(
                ErrorKind::UpstreamProtocol,
                format!(
                    "server-sent event larger than {} bytes; stream aborted",
                    self.max_frame
                ),
            ));
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.frame = Frame::default();
        self.has_data = false;
        self.has_fields = false;
        self.frame_bytes = 0;
    }

    fn on_line(&mut self, line: &[u8], out: &mut Vec<Frame>) {
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.frame));
            }
            self.reset();
            return;
        }
        self.has_fields = true;
        // The field name is split off at the first colon on the bytes (a colon never belongs
        // to a multi-byte character, nor ends an invalid sequence's replacement), so only the
        // value needs decoding: validated in one pass, replaced lossily only when invalid.
        if let Some(comment) = line.strip_prefix(b":") {
            self.frame.comment = Some(text(comment).trim_start().to_owned());
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.frame.data.push('\n');
                }
                self.frame.data.push_str(&text(value));
                self.has_data = true;
            }
            b"event" => self.frame.event = Some(text(value).into_owned()),
            b"id" => self.frame.id = Some(text(value).into_owned()),
            _ => {}
        }
    }
}

/// Bytes as text: borrowed when valid UTF-8 (the common case, checked at full speed), with
/// U+FFFD for each invalid sequence otherwise.
fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Decodes a whole body at once (tests and non-streaming fallbacks).
pub fn decode_all(body: &[u8]) -> Result<(Vec<Frame>, SseTail), Error> {
    let mut d = SseDecoder::default();
    let mut out = Vec::new();
    d.push(body, &mut out)?;
    let tail = d.finish();
    Ok((out, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(chunks: &[&[u8]]) -> (Vec<Frame>, SseTail) {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut out).unwrap();
        }
        let tail = d.finish();
        (out, tail)
    }

    #[test]
    fn dashscope_framing_without_spaces() {
        let body = b"id:1\nevent:result\n:HTTP_STATUS/200\ndata:{\"a\":1}\n\n";
        let (f, tail) = frames(&[body]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].event.as_deref(), Some("result"));
        assert_eq!(f[0].id.as_deref(), Some("1"));
        assert_eq!(f[0].comment.as_deref(), Some("HTTP_STATUS/200"));
        assert_eq!(f[0].data, "{\"a\":1}");
        assert!(!tail.truncated);
    }

    #[test]
    fn multiple_data_lines_join_with_newline_and_one_space_is_dropped() {
        let (f, _) = frames(&[b"data:  a\ndata: b\r\n\r\ndata:c\r\r"]);
        assert_eq!(f[0].data, " a\nb");
        assert_eq!(f[1].data, "c");
    }

    #[test]
    fn truncated_last_frame_is_delivered_and_reported() {
        let (f, tail) = frames(&[b"data: a\n\ndata: b"]);
        assert_eq!(f.len(), 1);
        assert!(tail.truncated);
        assert_eq!(tail.frame.unwrap().data, "b");
        let (_, tail) = frames(&[b"data: a\n\n"]);
        assert!(!tail.truncated && tail.frame.is_none());
    }

    #[test]
    fn frames_without_data_are_not_dispatched() {
        let (f, _) = frames(&[b": keep-alive\n\nevent: ping\n\ndata: x\n\n"]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].data, "x");
    }

    #[test]
    fn oversized_frame_is_an_error() {
        let mut d = SseDecoder::new(16);
        let mut out = Vec::new();
        let err = d.push(&[b'a'; 64], &mut out).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
        let mut d = SseDecoder::new(16);
        let err = d.push(b"data: 0123456789\ndata: 0123456789\n", &mut out);
        assert!(err.is_err());
    }

    fn sample_body() -> impl Strategy<Value = Vec<u8>> {
        let line_end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
        let field = prop_oneof![
            "[a-z😀é中 ]{0,12}".prop_map(|v| format!("data: {v}")),
            "[a-z中]{0,6}".prop_map(|v| format!("data:{v}")),
            "[a-z]{1,6}".prop_map(|v| format!("event:{v}")),
            "[0-9]{1,3}".prop_map(|v| format!("id: {v}")),
            Just(":HTTP_STATUS/200".to_string()),
            Just(String::new()),
        ];
        proptest::collection::vec((field, line_end), 0..40).prop_map(|parts| {
            let mut s = String::new();
            for (f, e) in parts {
                s.push_str(&f);
                s.push_str(e);
            }
            s.into_bytes()
        })
    }

    /// The frames of `lines` (each without its line end) as the grammar reads them, decoding
    /// each whole line lossily before splitting it: the reference for the byte-level split.
    fn reference(lines: &[Vec<u8>]) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut frame = Frame::default();
        let mut has_data = false;
        for line in lines {
            if line.is_empty() {
                if has_data {
                    out.push(std::mem::take(&mut frame));
                }
                frame = Frame::default();
                has_data = false;
                continue;
            }
            let text = String::from_utf8_lossy(line);
            if let Some(c) = text.strip_prefix(':') {
                frame.comment = Some(c.trim_start().to_owned());
                continue;
            }
            let (field, value) = match text.find(':') {
                Some(i) => (
                    &text[..i],
                    text[i + 1..].strip_prefix(' ').unwrap_or(&text[i + 1..]),
                ),
                None => (&text[..], ""),
            };
            match field {
                "data" => {
                    if has_data {
                        frame.data.push('\n');
                    }
                    frame.data.push_str(value);
                    has_data = true;
                }
                "event" => frame.event = Some(value.to_owned()),
                "id" => frame.id = Some(value.to_owned()),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn invalid_utf8_is_replaced_in_values_and_names() {
        let (f, _) = frames(&[b"data: a\xffb\nda\xe4:ta: x\n\xe4: y\nevent: \xf0\x9f\n\n"]);
        assert_eq!(f[0].data, "a\u{fffd}b");
        assert_eq!(f[0].event.as_deref(), Some("\u{fffd}"));
    }

    fn byte_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let line = prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 0..12),
            (
                prop_oneof![
                    Just(&b"data"[..]),
                    Just(&b"event"[..]),
                    Just(&b"id"[..]),
                    Just(&b""[..])
                ],
                proptest::collection::vec(any::<u8>(), 0..12)
            )
                .prop_map(|(f, v)| [f, &b":"[..], &v[..]].concat()),
        ];
        proptest::collection::vec(
            line.prop_map(|l: Vec<u8>| {
                l.into_iter()
                    .filter(|b| *b != b'\n' && *b != b'\r')
                    .collect()
            }),
            0..30,
        )
    }

    proptest! {
        #[test]
        fn any_bytes_decode_as_the_lossy_line_grammar(lines in byte_lines()) {
            let mut body = Vec::new();
            for l in &lines {
                body.extend_from_slice(l);
                body.push(b'\n');
            }
            let (got, _) = frames(&[&body]);
            prop_assert_eq!(got, reference(&lines));
        }

        #[test]
        fn any_chunking_gives_the_same_frames(body in sample_body(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12)) {
            let whole = frames(&[&body]);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&body[last..p]);
                last = p;
            }
            chunks.push(&body[last..]);
            let split = frames(&chunks);
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn byte_at_a_time_equals_whole(body in sample_body()) {
            let whole = frames(&[&body]);
            let singles: Vec<&[u8]> = body.chunks(1).collect();
            prop_assert_eq!(whole, frames(&singles));
        }
    }
}
