//! Retrieval of the earlier turns most relevant to the newest one: embeddings through an
//! [`Embedder`] ([`ClientEmbedder`] calls [`Client::embed`]), a pluggable [`VectorIndex`], an
//! in-process cosine index ([`MemoryIndex`]) and the same index persisted in SQLite
//! ([`SqliteIndex`], feature `sqlite`, on by default).
//!
//! Entries are keyed by a content hash of the turn, so re-fitting the same conversation embeds
//! each turn once, and one index can serve many conversations: a search only considers the keys
//! the caller allows.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;

use crate::client::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::types::EmbeddingRequest;

/// Turns texts into vectors.
pub trait Embedder: Send + Sync {
    /// One vector per text, in order.
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>>>;
}

/// Embeddings from a model through a [`Client`] (`provider/model`, e.g.
/// `dashscope/text-embedding-v3`).
#[derive(Debug, Clone)]
pub struct ClientEmbedder {
    client: Client,
    model: String,
}

impl ClientEmbedder {
    /// Embeds with `model`.
    pub fn new(client: Client, model: impl Into<String>) -> Self {
        ClientEmbedder {
            client,
            model: model.into(),
        }
    }
}

impl Embedder for ClientEmbedder {
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            let resp = self
                .client
                .embed(EmbeddingRequest::new(self.model.clone(), texts.to_vec()))
                .await?;
            let mut data = resp.data;
            data.sort_by_key(|e| e.index);
            if data.len() != texts.len() {
                return Err(Error::protocol(format!(
                    "asked for {} embeddings, got {}",
                    texts.len(),
                    data.len()
                )));
            }
            Ok(data.into_iter().map(|e| e.vector).collect())
        })
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The entry's key.
    pub key: String,
    /// Cosine similarity with the query, in [-1, 1].
    pub score: f32,
}

/// A store of vectors searchable by cosine similarity.
pub trait VectorIndex: Send + Sync {
    /// True when `key` is stored.
    fn contains(&self, key: &str) -> Result<bool>;
    /// Stores (or replaces) the vector of `key`.
    fn insert(&self, key: &str, vector: &[f32]) -> Result<()>;
    /// The `k` entries most similar to `query` among those `allow` accepts, best first (ties
    /// broken by key, so results are deterministic).
    fn search(&self, query: &[f32], k: usize, allow: &dyn Fn(&str) -> bool) -> Result<Vec<Hit>>;
}

/// Cosine similarity; 0 when either vector is zero or the lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += f64::from(*x) * f64::from(*y);
        na += f64::from(*x) * f64::from(*x);
        nb += f64::from(*y) * f64::from(*y);
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    (dot / (na.sqrt() * nb.sqrt())) as f32
}

/// An in-process index: all vectors in memory, exact (brute-force) cosine search.
#[derive(Debug, Default)]
pub struct MemoryIndex {
    entries: RwLock<BTreeMap<String, Vec<f32>>>,
}

fn poisoned() -> Error {
    Error::new(ErrorKind::Internal, "vector index lock poisoned")
}

impl MemoryIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.read().map_or(0, |e| e.len())
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl VectorIndex for MemoryIndex {
    fn contains(&self, key: &str) -> Result<bool> {
        Ok(self
            .entries
            .read()
            .map_err(|_| poisoned())?
            .contains_key(key))
    }

    fn insert(&self, key: &str, vector: &[f32]) -> Result<()> {
        self.entries
            .write()
            .map_err(|_| poisoned())?
            .insert(key.to_owned(), vector.to_vec());
        Ok(())
    }

    fn search(&self, query: &[f32], k: usize, allow: &dyn Fn(&str) -> bool) -> Result<Vec<Hit>> {
        let entries = self.entries.read().map_err(|_| poisoned())?;
        let mut hits: Vec<Hit> = entries
            .iter()
            .filter(|(key, _)| allow(key))
            .map(|(key, v)| Hit {
                key: key.clone(),
                score: cosine(query, v),
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key)));
        hits.truncate(k);
        Ok(hits)
    }
}

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteIndex;

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::Path;
    use std::sync::Mutex;

    use super::{poisoned, Hit, MemoryIndex, VectorIndex};
    use crate::error::{Error, ErrorKind, Result};

    fn db_error(e: rusqlite::Error) -> Error {
        Error::new(ErrorKind::Internal, format!("vector index database: {e}")).with_source(e)
    }

    /// A [`MemoryIndex`] persisted in a SQLite file: loaded on open, written through on insert
    /// (table `llmux_vectors(key TEXT PRIMARY KEY, dim INTEGER, vector BLOB)`, vectors as
    /// little-endian `f32`).
    #[derive(Debug)]
    pub struct SqliteIndex {
        memory: MemoryIndex,
        db: Mutex<rusqlite::Connection>,
    }

    impl SqliteIndex {
        /// Opens (or creates) the index at `path` and loads every vector.
        pub fn open(path: impl AsRef<Path>) -> Result<Self> {
            Self::from_connection(rusqlite::Connection::open(path).map_err(db_error)?)
        }

        /// An index in a private in-memory database (for tests).
        pub fn open_in_memory() -> Result<Self> {
            Self::from_connection(rusqlite::Connection::open_in_memory().map_err(db_error)?)
        }

        fn from_connection(db: rusqlite::Connection) -> Result<Self> {
            db.execute_batch(
                "CREATE TABLE IF NOT EXISTS llmux_vectors (
                    key TEXT PRIMARY KEY NOT NULL,
                    dim INTEGER NOT NULL,
                    vector BLOB NOT NULL
                )",
            )
            .map_err(db_error)?;
            let memory = MemoryIndex::new();
            {
                let mut stmt = db
                    .prepare("SELECT key, dim, vector FROM llmux_vectors ORDER BY key")
                    .map_err(db_error)?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                        ))
                    })
                    .map_err(db_error)?;
                for row in rows {
                    let (key, dim, blob) = row.map_err(db_error)?;
                    if usize::try_from(dim).ok() != Some(blob.len() / 4) || blob.len() % 4 != 0 {
                        return Err(Error::new(
                            ErrorKind::Internal,
                            format!("vector index entry `{key}` is corrupt"),
                        ));
                    }
                    let v: Vec<f32> = blob
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    memory.insert(&key, &v)?;
                }
            }
            Ok(SqliteIndex {
                memory,
                db: Mutex::new(db),
            })
        }

        /// Number of entries.
        pub fn len(&self) -> usize {
            self.memory.len()
        }

        /// True when empty.
        pub fn is_empty(&self) -> bool {
            self.memory.is_empty()
        }
    }

    impl VectorIndex for SqliteIndex {
        fn contains(&self, key: &str) -> Result<bool> {
            self.memory.contains(key)
        }

        fn insert(&self, key: &str, vector: &[f32]) -> Result<()> {
            let blob: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            self.db
                .lock()
                .map_err(|_| poisoned())?
                .execute(
                    "INSERT INTO llmux_vectors (key, dim, vector) VALUES (?1, ?2, ?3)
                     ON CONFLICT(key) DO UPDATE SET dim = excluded.dim, vector = excluded.vector",
                    rusqlite::params![key, vector.len() as i64, blob],
                )
                .map_err(db_error)?;
            self.memory.insert(key, vector)
        }

        fn search(
            &self,
            query: &[f32],
            k: usize,
            allow: &dyn Fn(&str) -> bool,
        ) -> Result<Vec<Hit>> {
            self.memory.search(query, k, allow)
        }
    }
}

/// Retrieval settings for the context manager.
#[derive(Clone)]
pub struct Retriever {
    /// Where turn vectors live.
    pub index: Arc<dyn VectorIndex>,
    /// How texts become vectors.
    pub embedder: Arc<dyn Embedder>,
    /// At most this many earlier turns are brought back.
    pub top_k: usize,
    /// Token budget for the retrieved turns (reserved out of the window; the context manager
    /// gives them at most a quarter of the prompt's share of the window).
    pub budget_tokens: u64,
    /// Prefix of the index keys, so one index may hold the vectors of several embedding
    /// models (e.g. the model's name); empty by default.
    pub namespace: String,
}

impl std::fmt::Debug for Retriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retriever")
            .field("top_k", &self.top_k)
            .field("budget_tokens", &self.budget_tokens)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Retriever {
    /// Retrieval through `index` and `embedder`: 3 turns within 1,024 tokens by default.
    pub fn new(index: Arc<dyn VectorIndex>, embedder: Arc<dyn Embedder>) -> Self {
        Retriever {
            index,
            embedder,
            top_k: 3,
            budget_tokens: 1024,
            namespace: String::new(),
        }
    }

    /// Sets the prefix of the index keys.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The index key of a turn: the namespace and the SHA-256 (hex) of its messages.
    pub fn key(&self, turn: &[crate::types::Message]) -> String {
        let hash = hex::encode(super::fingerprint(turn));
        if self.namespace.is_empty() {
            hash
        } else {
            format!("{}:{hash}", self.namespace)
        }
    }

    /// Sets how many turns come back.
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }

    /// Sets the token budget.
    pub fn budget_tokens(mut self, tokens: u64) -> Self {
        self.budget_tokens = tokens;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_search_is_ordered_filtered_and_deterministic() {
        let idx = MemoryIndex::new();
        idx.insert("a", &[1.0, 0.0]).unwrap();
        idx.insert("b", &[0.0, 1.0]).unwrap();
        idx.insert("c", &[1.0, 0.0]).unwrap();
        idx.insert("d", &[0.7, 0.7]).unwrap();
        let hits = idx.search(&[1.0, 0.1], 3, &|_| true).unwrap();
        let keys: Vec<_> = hits.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["a", "c", "d"]);
        let hits = idx.search(&[1.0, 0.1], 3, &|k| k != "a").unwrap();
        assert_eq!(hits[0].key, "c");
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_index_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.sqlite");
        {
            let idx = SqliteIndex::open(&path).unwrap();
            idx.insert("x", &[0.25, -1.5, 3.0]).unwrap();
            idx.insert("y", &[1.0, 0.0, 0.0]).unwrap();
            idx.insert("x", &[0.5, 0.5, 0.5]).unwrap();
        }
        let idx = SqliteIndex::open(&path).unwrap();
        assert_eq!(idx.len(), 2);
        assert!(idx.contains("x").unwrap());
        let hits = idx.search(&[1.0, 1.0, 1.0], 1, &|_| true).unwrap();
        assert_eq!(hits[0].key, "x");
        assert!((hits[0].score - 1.0).abs() < 1e-6);
    }
}
