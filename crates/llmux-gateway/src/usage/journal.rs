//! The local usage journal: an append-only file journal that makes a request's accounting
//! survive the gateway process being killed without a database round trip on the request's
//! path (`server.usage_journal`, the default for a SQLite file database).
//!
//! The request task itself appends, under a short mutex, a line when the request is about to
//! be sent upstream (its [`InflightRecord`], a *begin*), a line with its [`UsageRecord`] when
//! it ends, or a line saying it was *abandoned* (it ended before any upstream call). An append
//! is a copy into a shared memory mapping of the segment file (no system call; `write(2)`
//! where the file system cannot map one, see `SegmentFile`). A line is in the operating
//! system's page cache when the append returns, so it survives the process being killed;
//! there is no fsync, which is the guarantee SQLite gives with WAL and `synchronous=NORMAL`
//! (not a power loss). The records are then written to
//! the store by the recorder's background writer in batches, so the database work is shared by
//! hundreds of requests.
//!
//! Lines go to numbered segment files (`seg-<n>.jsonl`, one JSON array a line; the current
//! segment's reserved, unwritten rest reads as zero bytes, which end it). The current
//! segment is rolled when it has grown by `segment_bytes`, or after a flush of the writer once
//! it holds `roll_after_flush_bytes`; a new segment starts with the begins of the requests still
//! open, so older segments are never needed for them. A segment is deleted once it is no longer
//! the current one, every record in it is committed to the store and every older segment is
//! deleted (segments go oldest first, so a request's begin is never kept while its record or
//! abandon line is gone). A graceful shutdown that wrote everything deletes the journal's
//! segments.
//!
//! At start-up, before the gateway serves, [`LedgerJournal::open`] takes the directory's lock
//! (two gateways never share a journal: the second one fails to start), reads the segments a
//! previous process left, writes their records to the store (insert-if-absent by `request_id`,
//! so a record already committed is never doubled), records every begin without a record or an
//! abandon line as [`crate::store::INTERRUPTED`] at its reserved estimate (the record
//! [`InflightRecord::interrupted`] builds, exactly as the database journal's recovery does),
//! and deletes the segments. A truncated or corrupt line (a crash in the middle of a write) and
//! a line longer than [`MAX_LINE_BYTES`] are skipped with a warning.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::store::{InflightRecord, Store, StoreError, UsageRecord};

/// The longest journal line, in bytes. Longer lines are never written (the entry goes to the
/// store's own journal instead) and are skipped when read.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Records per store transaction during start-up recovery.
const RECOVERY_CHUNK: usize = 500;

const SEGMENT_PREFIX: &str = "seg-";
const SEGMENT_SUFFIX: &str = ".jsonl";
const LOCK_FILE: &str = "lock";

/// Journal settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalConfig {
    /// Bytes appended to a segment (beyond the open begins it starts with) after which the next
    /// append rolls to a new segment (default 4 MiB).
    pub segment_bytes: u64,
    /// After a flush of the writer, the segment is rolled when it holds at least this many
    /// appended bytes (default 64 KiB), so the journal holds little more than the records not
    /// yet committed.
    pub roll_after_flush_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            segment_bytes: 4 * 1024 * 1024,
            roll_after_flush_bytes: 64 * 1024,
        }
    }
}

/// Why the journal could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Another process (or another gateway in this one) holds the directory's lock.
    #[error(
        "the usage journal directory {} is in use by another gateway (its lock file is held); \
         two gateways cannot share a journal: give each its own `server.usage_journal`",
        .dir.display()
    )]
    Locked {
        /// The journal directory.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("usage journal {}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// Writing the records left in the journal to the store failed (the segments are kept).
    #[error("recording the usage journal's leftover records in the store failed: {0}")]
    Store(#[from] StoreError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What start-up recovery found in the segments a previous process left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files read (and deleted).
    pub segments: usize,
    /// Usage records found (written to the store unless it already had them).
    pub records: usize,
    /// Requests begun without a record or an abandon line, recorded as interrupted (unless the
    /// store already had a record under their id).
    pub interrupted: usize,
    /// Lines skipped: truncated, corrupt or too long.
    pub skipped_lines: usize,
}

// Lines are JSON arrays whose first element names the kind; the other elements are the
// fields in a fixed order (no field names: a line is a third of the size, and cheaper to
// write). A line is written and read by the same build (a journal is recorded at the next
// start), but a new field still goes at the end of its kind.
//
//   ["b", request_id, at_ms, key_id, channel, provider, model, upstream_model, plan,
//         input_tokens, output_tokens, cost, stream, client_request_id, team_id]
//   ["r", request_id, client_request_id, at_ms, key_id, channel, provider, model,
//         upstream_model, input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost,
//         latency_ms, ttft_ms, status, error_kind, cancelled, stream, usage_estimated, team_id,
//         cache_hit]
//
// A field added at the end reads as its default from a line written before it existed.
//   ["a", request_id]

/// A begin line, as written (an [`InflightRecord`] without its instance).
#[derive(Serialize)]
struct BeginRef<'a>(
    &'static str,
    &'a str,
    i64,
    Option<i64>,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    u64,
    u64,
    f64,
    bool,
    Option<&'a str>,
    Option<i64>,
);

/// A begin line, as read (its kind was read from the line's start).
#[derive(Deserialize)]
struct BeginLine(
    serde::de::IgnoredAny,
    String,
    i64,
    Option<i64>,
    String,
    String,
    String,
    String,
    String,
    u64,
    u64,
    f64,
    bool,
    Option<String>,
    #[serde(default)] Option<i64>,
);

/// A record line, as written (a [`UsageRecord`]).
#[derive(Serialize)]
struct RecordRef<'a>(
    &'static str,
    &'a str,
    Option<&'a str>,
    i64,
    Option<i64>,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    u64,
    u64,
    u64,
    u64,
    f64,
    u64,
    Option<u64>,
    u16,
    Option<&'a str>,
    bool,
    bool,
    bool,
    Option<i64>,
    bool,
);

/// A record line, as read (its kind was read from the line's start).
#[derive(Deserialize)]
struct RecordLine(
    serde::de::IgnoredAny,
    String,
    Option<String>,
    i64,
    Option<i64>,
    String,
    String,
    String,
    String,
    u64,
    u64,
    u64,
    u64,
    f64,
    u64,
    Option<u64>,
    u16,
    Option<String>,
    bool,
    bool,
    bool,
    #[serde(default)] Option<i64>,
    #[serde(default)] bool,
);

/// A line, as read.
enum Line {
    Begin(InflightRecord),
    Record(UsageRecord),
    Abandon(String),
}

impl Line {
    /// Parses one line (without its newline); `None` when it is not a whole, valid line.
    fn parse(bytes: &[u8]) -> Option<Line> {
        if bytes.starts_with(br#"["b","#) {
            let b: BeginLine = serde_json::from_slice(bytes).ok()?;
            Some(Line::Begin(InflightRecord {
                request_id: b.1,
                instance: String::new(),
                at_ms: b.2,
                key_id: b.3,
                channel: b.4,
                provider: b.5,
                model: b.6,
                upstream_model: b.7,
                plan: b.8,
                input_tokens: b.9,
                output_tokens: b.10,
                cost: b.11,
                stream: b.12,
                client_request_id: b.13,
                team_id: b.14,
            }))
        } else if bytes.starts_with(br#"["r","#) {
            let r: RecordLine = serde_json::from_slice(bytes).ok()?;
            Some(Line::Record(UsageRecord {
                request_id: r.1,
                client_request_id: r.2,
                at_ms: r.3,
                key_id: r.4,
                channel: r.5,
                provider: r.6,
                model: r.7,
                upstream_model: r.8,
                input_tokens: r.9,
                output_tokens: r.10,
                cached_tokens: r.11,
                reasoning_tokens: r.12,
                cost: r.13,
                latency_ms: r.14,
                ttft_ms: r.15,
                status: r.16,
                error_kind: r.17,
                cancelled: r.18,
                stream: r.19,
                usage_estimated: r.20,
                team_id: r.21,
                cache_hit: r.22,
            }))
        } else {
            let (tag, id): (String, String) = serde_json::from_slice(bytes).ok()?;
            (tag == "a").then_some(Line::Abandon(id))
        }
    }
}

/// `value` as one line (with its newline), at most [`MAX_LINE_BYTES`].
fn encode(value: &impl Serialize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(256);
    serde_json::to_writer(&mut buf, value).map_err(io::Error::other)?;
    buf.push(b'\n');
    if buf.len() > MAX_LINE_BYTES {
        return Err(io::Error::other(format!(
            "a journal line of {} bytes exceeds the {MAX_LINE_BYTES}-byte bound",
            buf.len()
        )));
    }
    Ok(buf)
}

fn encode_begin(b: &InflightRecord) -> io::Result<Vec<u8>> {
    encode(&BeginRef(
        "b",
        &b.request_id,
        b.at_ms,
        b.key_id,
        &b.channel,
        &b.provider,
        &b.model,
        &b.upstream_model,
        &b.plan,
        b.input_tokens,
        b.output_tokens,
        b.cost,
        b.stream,
        b.client_request_id.as_deref(),
        b.team_id,
    ))
}

fn encode_record(r: &UsageRecord) -> io::Result<Vec<u8>> {
    encode(&RecordRef(
        "r",
        &r.request_id,
        r.client_request_id.as_deref(),
        r.at_ms,
        r.key_id,
        &r.channel,
        &r.provider,
        &r.model,
        &r.upstream_model,
        r.input_tokens,
        r.output_tokens,
        r.cached_tokens,
        r.reasoning_tokens,
        r.cost,
        r.latency_ms,
        r.ttft_ms,
        r.status,
        r.error_kind.as_deref(),
        r.cancelled,
        r.stream,
        r.usage_estimated,
        r.team_id,
        r.cache_hit,
    ))
}

fn encode_abandon(request_id: &str) -> io::Result<Vec<u8>> {
    encode(&("a", request_id))
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{id:020}{SEGMENT_SUFFIX}"))
}

fn segment_id(name: &str) -> Option<u64> {
    name.strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?
        .parse()
        .ok()
}

/// The segment files in `dir`, oldest first.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut segs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(id) = entry.file_name().to_str().and_then(segment_id) {
            segs.push((id, entry.path()));
        }
    }
    segs.sort_unstable_by_key(|(id, _)| *id);
    Ok(segs)
}

/// Calls `on_line` with every complete line of `reader` (without its newline) of at most
/// [`MAX_LINE_BYTES`], up to the end of the input or its first zero byte (the reserved, never
/// written rest of a segment); returns how many lines were too long and whether the input
/// ended in the middle of a line (whose bytes are not passed on).
fn read_lines(reader: impl io::Read, mut on_line: impl FnMut(&[u8])) -> io::Result<(usize, bool)> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line = Vec::new();
    let mut too_long = 0;
    let mut skipping = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok((too_long, skipping || !line.is_empty()));
        }
        let (chunk, end) = match buf.iter().position(|&b| b == b'\n' || b == 0) {
            // A zero byte: the rest of the segment was reserved and never written.
            Some(i) if buf[i] == 0 => {
                let torn = skipping || !line.is_empty() || i > 0;
                return Ok((too_long, torn));
            }
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !skipping {
            if line.len() + chunk.len() > MAX_LINE_BYTES {
                skipping = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = end.unwrap_or(buf.len());
        reader.consume(used);
        if end.is_some() {
            if skipping {
                too_long += 1;
                skipping = false;
            } else {
                on_line(&line);
            }
            line.clear();
        }
    }
}

/// What the segments hold, merged.
#[derive(Default)]
struct Leftovers {
    begins: HashMap<String, InflightRecord>,
    records: HashMap<String, UsageRecord>,
    abandoned: HashSet<String>,
    skipped: usize,
}

impl Leftovers {
    fn read(&mut self, path: &Path) -> Result<(), JournalError> {
        let file = File::open(path).map_err(io_err(path))?;
        let mut corrupt = 0usize;
        let (too_long, truncated) = read_lines(file, |bytes| match Line::parse(bytes) {
            Some(Line::Begin(b)) => {
                self.begins.entry(b.request_id.clone()).or_insert(b);
            }
            Some(Line::Record(r)) => {
                self.records.entry(r.request_id.clone()).or_insert(r);
            }
            Some(Line::Abandon(id)) => {
                self.abandoned.insert(id);
            }
            None => corrupt += 1,
        })
        .map_err(io_err(path))?;
        let skipped = corrupt + too_long + usize::from(truncated);
        if skipped > 0 {
            tracing::warn!(
                segment = %path.display(),
                corrupt,
                too_long,
                truncated,
                "skipped unreadable lines of a usage journal segment (a crash in the middle of a write leaves one truncated last line)"
            );
        }
        self.skipped += skipped;
        Ok(())
    }

    /// The records to write: every record, then every begin without a record or an abandon
    /// line as interrupted. Returns them and the number of interrupted ones.
    fn into_records(self) -> (Vec<UsageRecord>, usize) {
        let Leftovers {
            begins,
            mut records,
            abandoned,
            ..
        } = self;
        let mut out: Vec<UsageRecord> = Vec::with_capacity(records.len() + begins.len());
        let mut interrupted = 0;
        for (id, begin) in begins {
            if records.contains_key(&id) || abandoned.contains(&id) {
                continue;
            }
            interrupted += 1;
            records.insert(id, begin.interrupted());
        }
        out.extend(records.into_values());
        out.sort_by(|a, b| (a.at_ms, &a.request_id).cmp(&(b.at_ms, &b.request_id)));
        (out, interrupted)
    }
}

/// The current segment's file.
///
/// Appends go through a shared memory mapping of the segment: an append is a copy into the
/// file's pages in the page cache, without a system call. The bytes are in the file when the
/// copy ends and survive the process being killed, exactly as a `write(2)`'s do (neither
/// survives a power loss; there is no fsync). Disk space is reserved (`fallocate`) ahead of
/// the appends, [`RESERVE_STEP`] at a time, so a full disk is an error of the append that
/// needs more space, never a fault on a write to the mapping. The reserved space not yet
/// written reads as zero bytes, which end the segment for a reader (a line never holds a zero
/// byte: JSON escapes control characters). Where the file system cannot reserve or map space,
/// appends use `write(2)`.
struct SegmentFile {
    file: File,
    /// Maps the segment's whole capacity; only the first `reserved` bytes are in the file.
    map: Option<memmap2::MmapMut>,
    /// The file's size: the bytes reserved so far.
    reserved: usize,
    /// Bytes in use from the start of the file.
    len: usize,
    /// The last `write(2)` failed part-way: the next append starts with a newline, so the torn
    /// bytes form a line of their own (skipped when read).
    torn: bool,
}

/// Disk space reserved for a mapped segment at a time.
const RESERVE_STEP: usize = 256 * 1024;

impl std::fmt::Debug for SegmentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentFile")
            .field("capacity", &self.map.as_ref().map(|m| m.len()))
            .field("reserved", &self.reserved)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl SegmentFile {
    /// Creates the segment at `path` (which must not exist) with room for `capacity` bytes.
    fn create(path: &Path, capacity: u64) -> io::Result<SegmentFile> {
        let mut seg = SegmentFile::create_unmapped(path)?;
        let first = usize::try_from(capacity).map_or(RESERVE_STEP, |c| c.min(RESERVE_STEP));
        let mapped = map_segment(&seg.file, capacity).and_then(|map| {
            seg.map = Some(map);
            seg.reserve(first)
        });
        if let Err(e) = mapped {
            tracing::debug!(
                segment = %path.display(),
                error = %e,
                "could not reserve and map a usage journal segment; appending with write(2)"
            );
            seg.map = None;
            // Whatever was reserved would read as an empty segment; drop it all the same.
            seg.file.set_len(0)?;
            seg.reserved = 0;
        }
        Ok(seg)
    }

    /// Creates the segment at `path` (which must not exist), appended to with `write(2)` until
    /// a mapping is set.
    fn create_unmapped(path: &Path) -> io::Result<SegmentFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(SegmentFile {
            file,
            map: None,
            reserved: 0,
            len: 0,
            torn: false,
        })
    }

    /// Reserves disk space up to at least `end` (at most the mapping's capacity).
    fn reserve(&mut self, end: usize) -> io::Result<()> {
        let capacity = self.map.as_ref().map_or(0, |m| m.len());
        if end > capacity {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "the usage journal segment is full",
            ));
        }
        let want = end
            .max(self.reserved.saturating_add(RESERVE_STEP))
            .min(capacity);
        rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::empty(),
            self.reserved as u64,
            (want - self.reserved) as u64,
        )?;
        // The mapping must never be written past the file's end (that would be a SIGBUS), so
        // the size is checked rather than assumed.
        if self.file.metadata()?.len() < want as u64 {
            return Err(io::Error::other(
                "reserving space did not extend the usage journal segment",
            ));
        }
        self.reserved = want;
        Ok(())
    }

    /// Appends `bytes` whole, or fails without appending any when a mapped segment is full or
    /// no more space can be reserved (a `write(2)` can fail part-way, see `torn`).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.map.is_none() {
            return self.write(bytes);
        }
        let end = self.len.saturating_add(bytes.len());
        if end > self.reserved {
            self.reserve(end)?;
        }
        let Some(room) = self.map.as_mut().and_then(|m| m.get_mut(self.len..end)) else {
            return Err(io::Error::other("the usage journal segment is not mapped"));
        };
        room.copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.torn {
            self.file.write_all(b"\n")?;
            self.len += 1;
            self.torn = false;
        }
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.len += bytes.len();
                Ok(())
            }
            Err(e) => {
                self.torn = true;
                Err(e)
            }
        }
    }

    /// Stops appending for good: unmaps the segment and trims the reserved space it did not
    /// use. A segment merely rolled away from is dropped untrimmed (its zero tail, at most
    /// [`RESERVE_STEP`], ends it for a reader; it is deleted once committed).
    fn close(self) {
        let SegmentFile { file, map, len, .. } = self;
        if let Some(map) = map {
            drop(map);
            if let Err(e) = file.set_len(len as u64) {
                tracing::debug!(error = %e, "could not trim a usage journal segment");
            }
        }
    }
}

/// Maps `capacity` bytes of `file` for writing (address space only: the file holds what
/// [`SegmentFile::reserve`] reserved).
#[expect(
    unsafe_code,
    reason = "mapping a file is unsafe in Rust; the one mapping of the crate, see SAFETY"
)]
fn map_segment(file: &File, capacity: u64) -> io::Result<memmap2::MmapMut> {
    let len = usize::try_from(capacity).map_err(io::Error::other)?;
    // SAFETY: the mapped memory must not change behind the program's back, and no access may
    // fall past the file's end. The file is one this process just created (`create_new`) in
    // the journal directory whose lock it holds, so no other gateway writes it; the program
    // only copies bytes into the mapping (any byte is a valid `u8`) and never reads it back;
    // `SegmentFile::append` copies only below `reserved`, the size `SegmentFile::reserve`
    // checked the file has; the file is trimmed only after the mapping is dropped. Another
    // program truncating the file would end this one with SIGBUS, as deleting the database's
    // files under it would break the store.
    unsafe { memmap2::MmapOptions::new().len(len).map_mut(file) }
}

/// A segment of the running journal.
#[derive(Debug)]
struct Segment {
    id: u64,
    /// Records appended to it (or pinned to it) and not yet committed to the store.
    pending: u64,
}

#[derive(Debug)]
struct State {
    /// The current segment; `None` once closed.
    file: Option<SegmentFile>,
    /// The directory's lock, held while the journal is open.
    lock: Option<File>,
    /// Live segments, oldest first; the last one is the current one.
    segments: VecDeque<Segment>,
    /// Bytes appended to the current segment since it was opened (the open begins it started
    /// with not counted).
    appended: u64,
    /// Begin lines of requests not yet ended, by request id (ids the gateway made, so a
    /// seeded fast hasher: it is looked up twice a request).
    open: HashMap<Box<str>, Vec<u8>, foldhash::fast::RandomState>,
    open_bytes: usize,
}

impl State {
    fn current(&self) -> u64 {
        self.segments.back().map_or(0, |s| s.id)
    }

    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the usage journal is closed"));
        };
        file.append(line)?;
        self.appended += line.len() as u64;
        Ok(())
    }

    /// Starts a new segment holding the open begins, with room for `segment_bytes` more (and
    /// one line). On failure the current one stays.
    fn roll(&mut self, dir: &Path, segment_bytes: u64) -> io::Result<()> {
        if self.file.is_none() {
            return Ok(());
        }
        let id = self.current() + 1;
        let path = segment_path(dir, id);
        let capacity = self.open_bytes as u64 + segment_bytes + MAX_LINE_BYTES as u64;
        let mut file = SegmentFile::create(&path, capacity)?;
        let mut buf = Vec::with_capacity(self.open_bytes);
        for line in self.open.values() {
            buf.extend_from_slice(line);
        }
        if let Err(e) = file.append(&buf) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        // The old segment is dropped untrimmed (see `SegmentFile::close`).
        self.file = Some(file);
        self.segments.push_back(Segment { id, pending: 0 });
        self.appended = 0;
        Ok(())
    }

    /// Segments that can go: older than the current one, every record committed, and every
    /// older segment gone. Removed from the list; the caller deletes the files.
    fn reap(&mut self, dir: &Path) -> Vec<PathBuf> {
        let current = self.current();
        let mut gone = Vec::new();
        while let Some(s) = self.segments.front() {
            if s.id == current || s.pending > 0 {
                break;
            }
            gone.push(segment_path(dir, s.id));
            self.segments.pop_front();
        }
        gone
    }

    fn close_open(&mut self, id: &str) -> bool {
        match self.open.remove(id) {
            Some(line) => {
                self.open_bytes -= line.len();
                true
            }
            None => false,
        }
    }
}

/// The local usage journal of one gateway (see the module docs). Appends are synchronous and
/// cheap; share it behind an `Arc`.
pub struct LedgerJournal {
    dir: PathBuf,
    cfg: JournalConfig,
    state: Mutex<State>,
    /// An append or a roll failed and was reported; the next success is reported too.
    failing: AtomicBool,
}

impl std::fmt::Debug for LedgerJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerJournal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn remove_files(paths: &[PathBuf]) {
    for p in paths {
        if let Err(e) = std::fs::remove_file(p) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(segment = %p.display(), error = %e, "could not delete a committed usage journal segment");
            }
        }
    }
}

impl LedgerJournal {
    /// Opens the journal in `dir` (created if missing): takes the directory's lock (failing
    /// with [`JournalError::Locked`] when another gateway holds it), records what a previous
    /// process left in `store` (see the module docs), deletes those segments and starts a new
    /// one. When the store fails, the segments are kept and the error returned.
    pub async fn open(
        dir: &Path,
        cfg: JournalConfig,
        store: &dyn Store,
    ) -> Result<(LedgerJournal, Recovery), JournalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        // An advisory lock (`flock` on Unix), released when the file is closed: also when the
        // process dies, so a killed gateway never blocks its restart.
        match fs4::FileExt::try_lock(&lock) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked {
                    dir: dir.to_owned(),
                })
            }
            Err(fs4::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let old = list_segments(dir)?;
        let mut leftovers = Leftovers::default();
        for (_, path) in &old {
            leftovers.read(path)?;
        }
        let skipped_lines = leftovers.skipped;
        let (records, interrupted) = leftovers.into_records();
        for chunk in records.chunks(RECOVERY_CHUNK) {
            store.commit(&[], chunk, &[]).await?;
        }
        let recovery = Recovery {
            segments: old.len(),
            records: records.len() - interrupted,
            interrupted,
            skipped_lines,
        };
        if !old.is_empty() {
            let tokens: u64 = records
                .iter()
                .filter(|r| r.error_kind.as_deref() == Some(crate::store::INTERRUPTED))
                .map(UsageRecord::billed_tokens)
                .sum();
            tracing::warn!(
                journal = %dir.display(),
                segments = recovery.segments,
                records = recovery.records,
                interrupted = recovery.interrupted,
                interrupted_tokens = tokens,
                skipped_lines,
                "recorded what the usage journal of a gateway that stopped without a clean shutdown held: its usage records (each at most once), and its requests in flight as interrupted at their reserved estimate"
            );
        }
        let paths: Vec<PathBuf> = old.iter().map(|(_, p)| p.clone()).collect();
        remove_files(&paths);
        let first = old.last().map_or(1, |(id, _)| id + 1);
        let path = segment_path(dir, first);
        let capacity = cfg.segment_bytes + MAX_LINE_BYTES as u64;
        let file = SegmentFile::create(&path, capacity).map_err(io_err(&path))?;
        let state = State {
            file: Some(file),
            lock: Some(lock),
            segments: VecDeque::from([Segment {
                id: first,
                pending: 0,
            }]),
            appended: 0,
            open: HashMap::default(),
            open_bytes: 0,
        };
        Ok((
            LedgerJournal {
                dir: dir.to_owned(),
                cfg,
                state: Mutex::new(state),
                failing: AtomicBool::new(false),
            },
            recovery,
        ))
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reports the first failure of a run of them (at error level) and the recovery.
    fn report<T>(&self, what: &'static str, result: io::Result<T>) -> io::Result<T> {
        match &result {
            Ok(_) => {
                if self.failing.load(Ordering::Relaxed)
                    && self.failing.swap(false, Ordering::AcqRel)
                {
                    tracing::info!(journal = %self.dir.display(), "the usage journal is writable again");
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::error!(
                        journal = %self.dir.display(),
                        error = %e,
                        what,
                        "writing the usage journal failed; entries go to the store's own journal (waited for) until it works again"
                    );
                }
            }
        }
        result
    }

    /// Rolls the current segment when it has grown by `segment_bytes`.
    fn roll_if_full(&self, st: &mut State) -> Vec<PathBuf> {
        if st.appended < self.cfg.segment_bytes {
            return Vec::new();
        }
        match st.roll(&self.dir, self.cfg.segment_bytes) {
            Ok(()) => st.reap(&self.dir),
            Err(e) => {
                let _ = self.report::<()>("roll a segment", Err(e));
                Vec::new()
            }
        }
    }

    /// Appends the begin line of a request about to be sent upstream.
    pub fn begin(&self, row: &InflightRecord) -> io::Result<()> {
        let line = encode_begin(row);
        let line = self.report("encode a begin line", line)?;
        let mut st = self.state();
        let gone = self.roll_if_full(&mut st);
        let result = st.append(&line);
        if result.is_ok() {
            st.open_bytes += line.len();
            if let Some(old) = st.open.insert(row.request_id.as_str().into(), line) {
                st.open_bytes -= old.len();
            }
        }
        drop(st);
        remove_files(&gone);
        self.report("append a begin line", result)
    }

    /// Appends a request's usage record; returns the segment it is counted in, to be passed
    /// to [`LedgerJournal::committed`] once the store has it. On failure the request's begin
    /// stays open until [`LedgerJournal::committed`] releases it.
    pub fn record(&self, rec: &UsageRecord) -> io::Result<u64> {
        let line = encode_record(rec);
        let line = self.report("encode a record line", line)?;
        let mut st = self.state();
        let gone = self.roll_if_full(&mut st);
        let result = st.append(&line).map(|()| {
            st.close_open(&rec.request_id);
            let seg = st.segments.back_mut().map(|s| {
                s.pending += 1;
                s.id
            });
            seg.unwrap_or(0)
        });
        drop(st);
        remove_files(&gone);
        self.report("append a record line", result)
    }

    /// Closes a request begun in this journal that ended without a record (nothing was sent
    /// upstream). False when the journal has no begin for it (it went to the store's journal).
    pub fn abandon(&self, request_id: &str) -> bool {
        let mut st = self.state();
        if !st.close_open(request_id) {
            return false;
        }
        // A failed abandon line at worst lets a crash record the request as interrupted.
        let result = encode_abandon(request_id).and_then(|line| st.append(&line));
        drop(st);
        let _ = self.report("append an abandon line", result);
        true
    }

    /// The store committed records counted in segments `segs` (`(segment, records)` pairs)
    /// and the records of the requests in `release` (whose record lines could not be
    /// written). Rolls after a flush when the segment is big enough, and deletes the segments
    /// no longer needed.
    pub fn committed(&self, segs: &[(u64, u64)], release: &[String]) {
        let mut st = self.state();
        for &(id, n) in segs {
            if let Some(s) = st.segments.iter_mut().find(|s| s.id == id) {
                s.pending = s.pending.saturating_sub(n);
            }
        }
        for id in release {
            st.close_open(id);
        }
        if st.appended >= self.cfg.roll_after_flush_bytes {
            let rolled = st.roll(&self.dir, self.cfg.segment_bytes);
            let _ = self.report("roll a segment", rolled);
        }
        let gone = st.reap(&self.dir);
        drop(st);
        remove_files(&gone);
    }

    /// Records not yet committed, over every live segment.
    pub fn pending(&self) -> u64 {
        self.state().segments.iter().map(|s| s.pending).sum()
    }

    /// Live segment files (the current one included).
    pub fn segments(&self) -> usize {
        self.state().segments.len()
    }

    /// Stops appending (later appends fail) and releases the directory's lock. When every
    /// record is committed and no request is open, the segments are deleted; otherwise they
    /// are kept for the next start to record. Returns the number of segments kept.
    pub fn close(&self) -> usize {
        let mut st = self.state();
        if st.file.is_none() {
            return 0;
        }
        if let Some(file) = st.file.take() {
            file.close();
        }
        let pending: u64 = st.segments.iter().map(|s| s.pending).sum();
        let open = st.open.len();
        let kept = if pending == 0 && open == 0 {
            let paths: Vec<PathBuf> = st
                .segments
                .drain(..)
                .map(|s| segment_path(&self.dir, s.id))
                .collect();
            remove_files(&paths);
            0
        } else {
            tracing::error!(
                journal = %self.dir.display(),
                records = pending,
                open,
                "the usage journal is kept with records not yet in the store or requests still open; the next start on this journal records them"
            );
            st.segments.len()
        };
        st.lock = None;
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> (Vec<Vec<u8>>, usize, bool) {
        let mut out = Vec::new();
        let (too_long, truncated) = read_lines(input, |l| out.push(l.to_vec())).unwrap();
        (out, too_long, truncated)
    }

    #[test]
    fn lines_are_split_and_a_truncated_tail_is_reported() {
        let (l, long, trunc) = lines(b"a\nbc\n\nd");
        assert_eq!(l, vec![b"a".to_vec(), b"bc".to_vec(), Vec::new()]);
        assert_eq!((long, trunc), (0, true));
        let (l, long, trunc) = lines(b"a\n");
        assert_eq!(l, vec![b"a".to_vec()]);
        assert_eq!((long, trunc), (0, false));
        assert_eq!(lines(b""), (Vec::new(), 0, false));
    }

    #[test]
    fn a_zero_byte_ends_the_segment() {
        // The reserved rest of a mapped segment: nothing after the first zero byte counts.
        let (l, long, trunc) = lines(b"a\nbc\n\0\0\0d\n");
        assert_eq!(l, vec![b"a".to_vec(), b"bc".to_vec()]);
        assert_eq!((long, trunc), (0, false));
        // A copy cut short by a kill: the line's start, then zeros (or its end after them).
        let (l, _, trunc) = lines(b"a\n[\"r\",\"x\0\0\0,1]\n");
        assert_eq!(l, vec![b"a".to_vec()]);
        assert!(trunc, "the partial line is reported, not read");
        assert_eq!(lines(b"\0\0"), (Vec::new(), 0, false));
    }

    #[test]
    fn a_mapped_segment_appends_whole_lines_and_is_trimmed_when_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut seg = SegmentFile::create(&path, 8).unwrap();
        assert!(seg.map.is_some(), "this file system maps segments");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8, "reserved");
        seg.append(b"ab\n").unwrap();
        seg.append(b"cd\n").unwrap();
        // The bytes are in the file at once, before anything is closed or flushed.
        assert_eq!(std::fs::read(&path).unwrap(), b"ab\ncd\n\0\0");
        let full = seg.append(b"ef\n").unwrap_err();
        assert_eq!(full.kind(), io::ErrorKind::StorageFull);
        assert_eq!(
            seg.len, 6,
            "a line that does not fit is not written in part"
        );
        seg.close();
        assert_eq!(std::fs::read(&path).unwrap(), b"ab\ncd\n");
        // Dropped without a close (a killed process): the zero tail stays, and ends the lines.
        let path = dir.path().join("seg2");
        let mut seg = SegmentFile::create(&path, 64).unwrap();
        seg.append(b"x\n").unwrap();
        drop(seg);
        let (l, _, trunc) = lines(&std::fs::read(&path).unwrap());
        assert_eq!((l, trunc), (vec![b"x".to_vec()], false));
    }

    #[test]
    fn an_unmapped_segment_appends_with_write() {
        // The path a file system that cannot reserve or map space takes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut seg = SegmentFile::create_unmapped(&path).unwrap();
        seg.append(b"ab\n").unwrap();
        seg.torn = true; // as after a write cut short
        seg.append(b"cd\n").unwrap();
        assert_eq!(seg.len, 7);
        seg.close();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"ab\n\ncd\n",
            "no reserved tail"
        );
    }

    #[test]
    fn a_mapped_segment_reserves_space_a_step_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let size = || std::fs::metadata(&path).unwrap().len() as usize;
        let mut seg = SegmentFile::create(&path, 3 * RESERVE_STEP as u64 + 100).unwrap();
        assert_eq!(size(), RESERVE_STEP, "one step reserved at first");
        let mut line = vec![b'x'; RESERVE_STEP - 1];
        line.push(b'\n');
        seg.append(&line).unwrap();
        assert_eq!(
            size(),
            RESERVE_STEP,
            "a line that fits reserves nothing more"
        );
        seg.append(b"y\n").unwrap();
        assert_eq!(
            size(),
            2 * RESERVE_STEP,
            "the next line reserves one more step"
        );
        let mut big = vec![b'z'; 2 * RESERVE_STEP];
        big.push(b'\n');
        seg.append(&big).unwrap();
        assert_eq!(
            size(),
            3 * RESERVE_STEP + 3,
            "a longer line reserves what it needs"
        );
        assert_eq!(seg.len, 3 * RESERVE_STEP + 3);
        let full = seg.append(&[b'w'; 100]).unwrap_err();
        assert_eq!(full.kind(), io::ErrorKind::StorageFull);
        drop(seg);
        let (l, long, trunc) = lines(&std::fs::read(&path).unwrap());
        assert_eq!(
            l,
            vec![b"y".to_vec()],
            "the long lines are over the line bound"
        );
        assert_eq!((long, trunc), (2, false));
    }

    #[test]
    fn overlong_lines_are_skipped_without_being_buffered() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 1];
        input.extend_from_slice(b"\nok\n");
        input.extend(std::iter::repeat_n(b'y', 3 * MAX_LINE_BYTES));
        let (l, long, trunc) = lines(&input);
        assert_eq!(l, vec![b"ok".to_vec()]);
        assert_eq!((long, trunc), (1, true));
        // Exactly the bound is kept.
        let mut input = vec![b'z'; MAX_LINE_BYTES];
        input.push(b'\n');
        let (l, long, _) = lines(&input);
        assert_eq!((l.len(), long), (1, 0));
    }

    #[test]
    fn segment_names_round_trip_and_others_are_ignored() {
        let p = segment_path(Path::new("/j"), 42);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(segment_id(name), Some(42));
        assert_eq!(segment_id("lock"), None);
        assert_eq!(segment_id("seg-x.jsonl"), None);
        assert_eq!(segment_id("seg-1.json"), None);
    }

    fn parse(line: &[u8]) -> Option<Line> {
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        Line::parse(&line[..line.len() - 1])
    }

    #[test]
    fn every_kind_of_line_reads_back_field_for_field() {
        let rec = UsageRecord {
            request_id: "r\n1".into(),
            client_request_id: Some("c\"\n".into()),
            at_ms: -5,
            key_id: Some(7),
            team_id: None,
            channel: "ch".into(),
            provider: "openai".into(),
            model: "m".into(),
            upstream_model: "m-up".into(),
            input_tokens: 1,
            output_tokens: 2,
            cached_tokens: 3,
            reasoning_tokens: 4,
            cost: 0.1 + 0.2,
            latency_ms: 5,
            ttft_ms: Some(6),
            status: 499,
            error_kind: Some("cancelled".into()),
            cancelled: true,
            stream: true,
            usage_estimated: true,
            cache_hit: true,
        };
        match parse(&encode_record(&rec).unwrap()) {
            Some(Line::Record(back)) => assert_eq!(back, rec),
            _ => panic!("not a record line"),
        }
        let empty = UsageRecord::default();
        match parse(&encode_record(&empty).unwrap()) {
            Some(Line::Record(back)) => assert_eq!(back, empty),
            _ => panic!("not a record line"),
        }
        let begin = InflightRecord {
            request_id: "b1".into(),
            instance: String::new(),
            at_ms: 9,
            key_id: None,
            team_id: None,
            channel: "a".into(),
            provider: "p".into(),
            model: "m".into(),
            upstream_model: "u".into(),
            plan: "a,b".into(),
            input_tokens: 10,
            output_tokens: 20,
            cost: 1.5,
            stream: true,
            client_request_id: Some("x".into()),
        };
        match parse(&encode_begin(&begin).unwrap()) {
            Some(Line::Begin(back)) => assert_eq!(back, begin),
            _ => panic!("not a begin line"),
        }
        match parse(&encode_abandon("gone").unwrap()) {
            Some(Line::Abandon(id)) => assert_eq!(id, "gone"),
            _ => panic!("not an abandon line"),
        }
        // A begin line is compact: well under the size of the JSON object.
        let line = encode_begin(&begin).unwrap();
        assert!(line.len() < serde_json::to_vec(&begin).unwrap().len() / 2);
    }

    #[test]
    fn lines_written_before_the_team_field_read_without_a_team() {
        let rec = UsageRecord {
            request_id: "r".into(),
            key_id: Some(3),
            team_id: Some(5),
            ..UsageRecord::default()
        };
        let line = encode_record(&rec).unwrap();
        match Line::parse(&line[..line.len() - 1]) {
            Some(Line::Record(r)) => assert_eq!(r.team_id, Some(5)),
            _ => panic!("not a record line"),
        }
        let text = String::from_utf8(line).unwrap();
        // Before the cache_hit field, and before the team field too.
        let before_cache = text.trim_end().strip_suffix(",false]").unwrap().to_owned() + "]";
        match Line::parse(before_cache.as_bytes()) {
            Some(Line::Record(r)) => assert_eq!((r.team_id, r.cache_hit), (Some(5), false)),
            _ => panic!("an older record line no longer parses: {before_cache}"),
        }
        let old = text
            .trim_end()
            .strip_suffix(",5,false]")
            .unwrap()
            .to_owned()
            + "]";
        match Line::parse(old.as_bytes()) {
            Some(Line::Record(r)) => assert_eq!((r.key_id, r.team_id), (Some(3), None)),
            _ => panic!("an older record line no longer parses: {old}"),
        }
        let begin = InflightRecord {
            request_id: "b".into(),
            team_id: Some(5),
            ..InflightRecord::default()
        };
        let text = String::from_utf8(encode_begin(&begin).unwrap()).unwrap();
        let old = text.trim_end().strip_suffix(",5]").unwrap().to_owned() + "]";
        match Line::parse(old.as_bytes()) {
            Some(Line::Begin(b)) => assert_eq!(b.team_id, None),
            _ => panic!("an older begin line no longer parses: {old}"),
        }
    }

    #[test]
    fn torn_corrupt_and_foreign_lines_do_not_parse() {
        let rec = UsageRecord {
            request_id: "r".into(),
            ..UsageRecord::default()
        };
        let line = encode_record(&rec).unwrap();
        let body = &line[..line.len() - 1];
        for cut in 1..body.len() {
            assert!(Line::parse(&body[..cut]).is_none(), "cut at {cut}");
        }
        for junk in [
            &b""[..],
            b"{}",
            b"[]",
            br#"["x","r"]"#,
            br#"["b","id"]"#,
            br#"["a"]"#,
            br#"["a",1]"#,
            b"\0\0\0",
        ] {
            assert!(
                Line::parse(junk).is_none(),
                "{}",
                String::from_utf8_lossy(junk)
            );
        }
        let huge = UsageRecord {
            client_request_id: Some("x".repeat(MAX_LINE_BYTES)),
            ..UsageRecord::default()
        };
        assert!(encode_record(&huge).is_err());
    }

    #[test]
    fn costs_read_back_bit_for_bit() {
        let mut rng = fastrand::Rng::with_seed(14);
        for i in 0..20_000u32 {
            // Prices are per million tokens: costs are small products with long mantissas.
            let cost = match i % 3 {
                0 => f64::from_bits(rng.u64(..) >> 2), // any finite positive value
                1 => rng.f64() * 10.0,
                _ => f64::from(rng.u32(..1_000_000)) * rng.f64() / 1e6,
            };
            let rec = UsageRecord {
                cost,
                ..UsageRecord::default()
            };
            let Some(Line::Record(back)) = parse(&encode_record(&rec).unwrap()) else {
                panic!("unreadable line for {cost:e}");
            };
            assert_eq!(back.cost.to_bits(), cost.to_bits(), "{cost:e}");
        }
    }

    #[test]
    fn leftovers_prefer_records_and_skip_abandoned_begins() {
        let begin = |id: &str| InflightRecord {
            request_id: id.into(),
            input_tokens: 10,
            output_tokens: 20,
            ..InflightRecord::default()
        };
        let mut l = Leftovers::default();
        for id in ["done", "gone", "open"] {
            l.begins.insert(id.into(), begin(id));
        }
        l.records.insert(
            "done".into(),
            UsageRecord {
                request_id: "done".into(),
                status: 200,
                ..UsageRecord::default()
            },
        );
        l.abandoned.insert("gone".into());
        let (records, interrupted) = l.into_records();
        assert_eq!(interrupted, 1);
        assert_eq!(records.len(), 2);
        let open = records.iter().find(|r| r.request_id == "open").unwrap();
        assert_eq!(open.error_kind.as_deref(), Some(crate::store::INTERRUPTED));
        assert_eq!(open.billed_tokens(), 30);
        let done = records.iter().find(|r| r.request_id == "done").unwrap();
        assert_eq!(done.status, 200);
    }
}
