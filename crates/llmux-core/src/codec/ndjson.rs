//! Newline-delimited JSON: bytes → one frame per non-empty line (a trailing `\r` is dropped).
//!
//! Same invariants as the SSE decoder: any split of the input gives the same frames, a line
//! longer than the bound is an error, and a last line without `\n` is delivered and reported.

use super::{Frame, Tail};
use crate::error::{Error, ErrorKind};

/// Incremental NDJSON decoder.
#[derive(Debug)]
pub struct NdjsonDecoder {
    line: Vec<u8>,
    max_frame: usize,
}

impl Default for NdjsonDecoder {
    fn default() -> Self {
        Self::new(super::DEFAULT_MAX_FRAME)
    }
}

impl NdjsonDecoder {
    /// A decoder that rejects lines longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        NdjsonDecoder {
            line: Vec::new(),
            max_frame,
        }
    }

    /// Feeds bytes; complete lines are appended to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Frame>) -> Result<(), Error> {
        while let Some(pos) = memchr::memchr(b'\n', chunk) {
            self.check(pos)?;
            if self.line.is_empty() {
                emit(&chunk[..pos], out);
            } else {
                self.line.extend_from_slice(&chunk[..pos]);
                emit(&self.line, out);
                self.line.clear();
            }
            chunk = &chunk[pos + 1..];
        }
        self.check(chunk.len())?;
        self.line.extend_from_slice(chunk);
        Ok(())
    }

    /// Ends the body: a last line without newline is delivered and reported as truncated.
    pub fn finish(&mut self) -> Tail {
        let line = std::mem::take(&mut self.line);
        let mut out = Vec::new();
        emit(&line, &mut out);
        let frame = out.pop();
        Tail {
            truncated: frame.is_some(),
            frame,
        }
    }

    fn check(&self, more: usize) -> Result<(), Error> {
        if self.line.len() + more > self.max_frame {
            return Err(Error::new(
                ErrorKind::UpstreamProtocol,
                format!(
                    "NDJSON line longer than {} bytes; stream aborted",
                    self.max_frame
                ),
            ));
        }
        Ok(())
    }
}

fn emit(line: &[u8], out: &mut Vec<Frame>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    out.push(Frame::data(String::from_utf8_lossy(line).into_owned()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(chunks: &[&[u8]]) -> (Vec<Frame>, Tail) {
        let mut d = NdjsonDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut out).unwrap();
        }
        (out, d.finish())
    }

    #[test]
    fn lines_become_frames_and_blank_lines_are_skipped() {
        let (f, tail) = frames(&[b"{\"a\":1}\r\n\n{\"b\":\"\xe4\xb8\xad\"}\n"]);
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].data, "{\"b\":\"中\"}");
        assert!(!tail.truncated);
        let (f, tail) = frames(&[b"{\"a\":1}\n{\"b\":"]);
        assert_eq!(f.len(), 1);
        assert!(tail.truncated);
        assert_eq!(tail.frame.unwrap().data, "{\"b\":");
    }

    #[test]
    fn long_lines_are_rejected() {
        let mut d = NdjsonDecoder::new(8);
        let mut out = Vec::new();
        assert!(d.push(b"0123", &mut out).is_ok());
        assert!(d.push(b"456789", &mut out).is_err());
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_frames(
            lines in proptest::collection::vec("[a-z中😀{}\":, ]{0,12}", 0..20),
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let sep = if crlf { "\r\n" } else { "\n" };
            let body = lines.join(sep).into_bytes();
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
            prop_assert_eq!(&whole, &frames(&chunks));
            let singles: Vec<&[u8]> = body.chunks(1).collect();
            prop_assert_eq!(whole, frames(&singles));
        }
    }
}
