//! Client authentication: the client key ([`client_key`]: `Authorization: Bearer <key>`,
//! `x-api-key` as Anthropic's SDKs send it, `x-goog-api-key` as Google's do, or the `key` query
//! parameter, in that order), checked against the static `server.api_keys`, then the virtual
//! keys of the store (a [`KeyVerifier`]). The same on every ingress.
//!
//! A key in the query string is read once, into a [`SecretString`] ([`query_key`]); the
//! request log and every error message carry the path alone, never the query.
//!
//! Policy: the gateway never runs open by accident. With no static keys and no key store,
//! `llmux serve` refuses to start unless `--insecure-no-auth` is given; only then is every
//! request admitted (as the [`Principal::Open`] principal). `/admin/*` always needs
//! `server.admin_key`; without one the admin endpoints answer 403.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use llmux_core::providers::BoxFuture;
use llmux_core::{ErrorKind, SecretString};

use crate::config::RawLimits;
use crate::error::ApiError;
use crate::store::{KeyRecord, Store};

mod key_cache;

use self::key_cache::{KeyCache, Tag, Tagger};

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// Auth is off (`--insecure-no-auth`).
    Open,
    /// One of `server.api_keys` (its position).
    Static(usize),
    /// A virtual key from the store.
    Virtual(Arc<VirtualKey>),
}

/// A virtual key as the router needs it.
#[derive(Debug, Clone)]
pub struct VirtualKey {
    /// The key as stored (no secret), with `[server.limits]` defaults filled in.
    pub record: KeyRecord,
}

impl Principal {
    /// The key id for usage records.
    pub fn key_id(&self) -> Option<i64> {
        match self {
            Principal::Virtual(k) => Some(k.record.id),
            Principal::Open | Principal::Static(_) => None,
        }
    }

    /// The key's name as logs, metrics and traces show it: a virtual key's name,
    /// `server.api_keys[N]` for a static key, empty for open access. Never the key itself.
    pub fn key_name(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Principal::Virtual(k) => std::borrow::Cow::Borrowed(&k.record.name),
            Principal::Static(i) => std::borrow::Cow::Owned(format!("server.api_keys[{i}]")),
            Principal::Open => std::borrow::Cow::Borrowed(""),
        }
    }

    /// The name of the virtual key's team, if it belongs to one (for logs).
    pub fn team(&self) -> Option<&str> {
        self.record().and_then(|k| k.team.as_deref())
    }

    /// The stored key, for limits.
    pub fn record(&self) -> Option<&KeyRecord> {
        match self {
            Principal::Virtual(k) => Some(&k.record),
            Principal::Open | Principal::Static(_) => None,
        }
    }

    /// The models this principal may use, when it is limited to some (a virtual key with an
    /// allow-list); `None` means every model.
    pub fn allowed_models(&self) -> Option<&[String]> {
        match self {
            Principal::Virtual(k) if !k.record.models.is_empty() => Some(&k.record.models),
            _ => None,
        }
    }

    /// Whether this principal may use `model` (403 otherwise).
    pub fn allows(&self, model: &str) -> Result<(), ApiError> {
        match self {
            Principal::Virtual(k) if !k.record.allows_model(model) => Err(ApiError::new(
                ErrorKind::PermissionDenied,
                format!("this key may not use the model `{model}`"),
            )
            .param("model")),
            _ => Ok(()),
        }
    }
}

/// Looks up virtual keys (implemented over the store).
pub trait KeyVerifier: Send + Sync + std::fmt::Debug {
    /// The principal for `key`, `Ok(None)` when the key is unknown.
    fn verify<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Principal>, ApiError>>;

    /// Keys were changed (revoked) through this gateway: forget any cached copies.
    fn forget_cached(&self) {}
}

/// Most virtual keys the cache holds; beyond it expired entries, then arbitrary ones, are
/// dropped.
const KEY_CACHE_CAPACITY: usize = 100_000;

/// Why a key lookup produced no key (errors are not cached; a miss is not cached either, so a
/// key created anywhere works at once).
#[derive(Debug, Clone, Copy)]
enum Lookup {
    /// No such key.
    Missing,
    /// The store failed (already logged).
    Unavailable,
}

/// Virtual keys from the store: unknown → `Ok(None)`, revoked or expired → 401, store
/// failure → 503 (never open access).
///
/// Found keys are cached in memory for `cache_ttl` (indexed by a keyed 128-bit hash of the key
/// under a secret of this process, never the plaintext; `auth/key_cache.rs`), with
/// `[server.limits]` defaults applied, so the hot path does not query the store on every
/// request; concurrent first uses of a key share one lookup. Expiry is checked
/// on every request against the cached record; a revocation through this gateway's admin API
/// empties the cache at once, one made elsewhere (the CLI, another gateway) applies within
/// `cache_ttl`.
///
/// While the store fails (a database restart), a key read successfully within the last
/// `stale_if_error` ([`DEFAULT_STALE_IF_ERROR`]) is served from that last known record instead
/// of refusing the request, and kept for another `cache_ttl` so requests do not queue on the
/// failing store; past that bound, or for a key never read, the answer is 503.
#[derive(Clone)]
pub struct StoreKeys {
    store: Arc<dyn Store>,
    defaults: RawLimits,
    /// Tags the presented keys for both caches.
    tagger: Arc<Tagger>,
    cache: Option<Arc<KeyCache<Arc<VirtualKey>, Lookup>>>,
    /// The last record read of each key, kept `stale_if_error` after that read.
    last_known: Option<moka::future::Cache<Tag, Arc<VirtualKey>>>,
}

/// How long a key's last known record may answer for a failing store (`server.key_stale_if_error`).
pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::from_secs(300);

impl std::fmt::Debug for StoreKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreKeys")
            .field("cached", &self.cache.as_ref().map(|c| c.len()))
            .field(
                "last_known",
                &self.last_known.as_ref().map(|c| c.entry_count()),
            )
            .finish_non_exhaustive()
    }
}

impl StoreKeys {
    /// Keys from `store`, with `defaults` for keys that set no limits of their own, cached for
    /// `cache_ttl` (zero: every request reads the store).
    pub fn new(store: Arc<dyn Store>, defaults: RawLimits, cache_ttl: Duration) -> Self {
        let cache =
            (!cache_ttl.is_zero()).then(|| Arc::new(KeyCache::new(cache_ttl, KEY_CACHE_CAPACITY)));
        StoreKeys {
            store,
            defaults,
            tagger: Arc::new(Tagger::new()),
            cache,
            last_known: None,
        }
        .stale_if_error(DEFAULT_STALE_IF_ERROR)
    }

    /// Serves a key from its last known record for up to `bound` after that record was read
    /// while the store fails (zero: never; a failing store means 503).
    #[must_use]
    pub fn stale_if_error(mut self, bound: Duration) -> Self {
        self.last_known = (!bound.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(KEY_CACHE_CAPACITY as u64)
                .time_to_live(bound)
                .build()
        });
        self
    }

    async fn load(&self, key: &str, tag: Tag) -> Result<Arc<VirtualKey>, Lookup> {
        let found = self.store.find_key(key).await.map_err(|e| {
            tracing::error!(error = %e, "the key store failed; refusing the request");
            Lookup::Unavailable
        })?;
        let Some(mut record) = found else {
            return Err(Lookup::Missing);
        };
        record.rpm = record.rpm.or(self.defaults.rpm);
        record.tpm = record.tpm.or(self.defaults.tpm);
        record.budget_cost = record.budget_cost.or(self.defaults.budget);
        let vk = Arc::new(VirtualKey { record });
        if let Some(last_known) = &self.last_known {
            last_known.insert(tag, vk.clone()).await;
        }
        Ok(vk)
    }

    /// The key's last known record, for a store that just failed; kept in the cache for
    /// another `cache_ttl`, so the next requests do not wait on the failing store.
    async fn last_known(&self, tag: Tag) -> Option<Arc<VirtualKey>> {
        let vk = self.last_known.as_ref()?.get(&tag).await?;
        tracing::warn!(
            key = %vk.record.prefix,
            "the key store is unavailable; the key is served from its last known record"
        );
        if let Some(cache) = &self.cache {
            cache.put(tag, vk.clone());
        }
        Some(vk)
    }
}

impl KeyVerifier for StoreKeys {
    fn verify<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Principal>, ApiError>> {
        Box::pin(async move {
            if !crate::keys::looks_like_key(key) {
                return Ok(None);
            }
            let tag = self.tagger.tag(key);
            let found = match &self.cache {
                Some(cache) => cache.get_or_load(tag, self.load(key, tag)).await,
                None => self.load(key, tag).await,
            };
            let found = match found {
                Err(Lookup::Unavailable) => self.last_known(tag).await.ok_or(Lookup::Unavailable),
                other => other,
            };
            let vk = match found {
                Ok(vk) => vk,
                Err(Lookup::Missing) => return Ok(None),
                Err(Lookup::Unavailable) => {
                    let mut err = ApiError::new(
                        ErrorKind::Internal,
                        "the key store is unavailable; try again later",
                    );
                    err.status = Some(http::StatusCode::SERVICE_UNAVAILABLE);
                    return Err(err);
                }
            };
            if !vk.record.is_active(crate::state::unix_now()) {
                return Err(ApiError::new(
                    ErrorKind::Authentication,
                    "This API key has been revoked or has expired.",
                ));
            }
            Ok(Some(Principal::Virtual(vk)))
        })
    }

    fn forget_cached(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
        if let Some(last_known) = &self.last_known {
            last_known.invalidate_all();
        }
    }
}

/// Checks client keys.
#[derive(Debug, Clone)]
pub struct Authenticator {
    static_keys: Vec<SecretString>,
    verifier: Option<Arc<dyn KeyVerifier>>,
    open: bool,
    admin_key: Option<SecretString>,
}

/// Compares without an early exit on the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key of a request's headers: `Authorization` (`Bearer <key>`, or the bare key), else
/// `x-api-key`, else `x-goog-api-key`; the first that is present and not blank.
pub fn client_key(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| {
        ["x-api-key", "x-goog-api-key"]
            .into_iter()
            .find_map(|name| {
                let v = headers.get(name)?.to_str().ok()?.trim();
                (!v.is_empty()).then_some(v)
            })
    })
}

/// The `key` parameter of a query string (`application/x-www-form-urlencoded`: `+` is a space,
/// `%XX` a byte), as Google's API takes it: the first non-empty one.
pub fn query_key(query: Option<&str>) -> Option<SecretString> {
    query?.split('&').find_map(|pair| {
        let value = pair.strip_prefix("key=")?.replace('+', " ");
        let value = percent_encoding::percent_decode_str(&value)
            .decode_utf8()
            .ok()?;
        let value = value.trim();
        (!value.is_empty()).then(|| SecretString::new(value))
    })
}

/// The bearer token of a request (DashScope SDKs send the same header).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let token = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .unwrap_or(v)
        .trim();
    (!token.is_empty()).then_some(token)
}

impl Authenticator {
    /// An authenticator; `open` admits everyone (only with `--insecure-no-auth`).
    pub fn new(
        static_keys: Vec<SecretString>,
        verifier: Option<Arc<dyn KeyVerifier>>,
        open: bool,
        admin_key: Option<SecretString>,
    ) -> Self {
        Authenticator {
            static_keys,
            verifier,
            open,
            admin_key,
        }
    }

    /// True when some way of admitting clients exists.
    pub fn is_configured(&self) -> bool {
        self.open || !self.static_keys.is_empty() || self.verifier.is_some()
    }

    /// The caller, or 401: the key of the headers ([`client_key`]), else `query_key` (the
    /// request's `key` query parameter, [`query_key`]).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        query_key: Option<&SecretString>,
    ) -> Result<Principal, ApiError> {
        if self.open {
            return Ok(Principal::Open);
        }
        let Some(token) = client_key(headers).or(query_key.map(SecretString::expose)) else {
            return Err(ApiError::new(
                ErrorKind::Authentication,
                "You didn't provide an API key. Send it as `Authorization: Bearer <key>` \
                 (or in `x-api-key`, `x-goog-api-key`, or the `key` query parameter).",
            ));
        };
        if let Some(i) = self
            .static_keys
            .iter()
            .position(|k| same(k.expose().as_bytes(), token.as_bytes()))
        {
            return Ok(Principal::Static(i));
        }
        if let Some(v) = &self.verifier {
            if let Some(p) = v.verify(token).await? {
                return Ok(p);
            }
        }
        Err(ApiError::new(
            ErrorKind::Authentication,
            "Incorrect API key provided.",
        ))
    }

    /// Keys were revoked through this gateway: drop cached copies so the change applies to
    /// the next request.
    pub fn keys_changed(&self) {
        if let Some(v) = &self.verifier {
            v.forget_cached();
        }
    }

    /// Whether an admin key is configured (the admin API and the dashboard are on).
    pub fn has_admin(&self) -> bool {
        self.admin_key.is_some()
    }

    /// Checks the admin key (403 when none is configured, 401 when wrong).
    pub fn admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(admin) = &self.admin_key else {
            return Err(ApiError::new(
                ErrorKind::PermissionDenied,
                "the admin endpoints are disabled: set server.admin_key",
            ));
        };
        match bearer(headers) {
            Some(t) if same(t.as_bytes(), admin.expose().as_bytes()) => Ok(()),
            _ => Err(ApiError::new(
                ErrorKind::Authentication,
                "the admin endpoints need `Authorization: Bearer <admin key>`",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn static_keys_admit_and_others_are_401() {
        let a = Authenticator::new(vec!["k1".into()], None, false, Some("adm".into()));
        assert!(matches!(
            a.authenticate(&headers("Bearer k1"), None).await,
            Ok(Principal::Static(0))
        ));
        let e = a
            .authenticate(&headers("Bearer k2"), None)
            .await
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 401);
        let e = a.authenticate(&HeaderMap::new(), None).await.unwrap_err();
        assert!(e.message.contains("didn't provide"));
        assert!(a.admin(&headers("Bearer adm")).is_ok());
        assert!(a.admin(&headers("Bearer k1")).is_err());
    }

    #[tokio::test]
    async fn keys_are_read_from_every_header_and_the_query() {
        let a = Authenticator::new(vec!["k1".into()], None, false, None);
        for name in ["x-api-key", "x-goog-api-key"] {
            let mut h = HeaderMap::new();
            h.insert(name, " k1 ".parse().unwrap());
            assert!(
                matches!(a.authenticate(&h, None).await, Ok(Principal::Static(0))),
                "{name}"
            );
        }
        let q = query_key(Some("alt=sse&key=k1")).unwrap();
        assert!(matches!(
            a.authenticate(&HeaderMap::new(), Some(&q)).await,
            Ok(Principal::Static(0))
        ));
        // Authorization comes first: a wrong bearer key is not rescued by a right x-api-key.
        let mut h = headers("Bearer k2");
        h.insert("x-api-key", "k1".parse().unwrap());
        assert!(a.authenticate(&h, Some(&q)).await.is_err());
        // A blank header does not hide the next one.
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "  ".parse().unwrap());
        h.insert("x-goog-api-key", "k1".parse().unwrap());
        assert_eq!(client_key(&h), Some("k1"));
    }

    #[test]
    fn query_keys_are_form_decoded_and_redacted() {
        assert_eq!(
            query_key(Some("a=1&key=sk%2Dx+y")).map(|k| k.expose().to_owned()),
            Some("sk-x y".to_owned())
        );
        assert!(query_key(Some("key=&monkey=x")).is_none());
        assert!(query_key(Some("key=%FF")).is_none());
        assert!(query_key(None).is_none());
        let k = query_key(Some("key=sk-secret-value")).unwrap();
        assert!(!format!("{k:?}").contains("secret"));
    }

    #[test]
    fn virtual_keys_limit_models() {
        let record = KeyRecord {
            id: 1,
            name: "k".into(),
            prefix: "sk-llmux-abc".into(),
            created_at: 0,
            expires_at: None,
            revoked: false,
            models: vec!["a".into()],
            rpm: None,
            tpm: None,
            budget_tokens: None,
            budget_cost: None,
            spent_tokens: 0,
            spent_cost: 0.0,
            ..KeyRecord::default()
        };
        let p = Principal::Virtual(Arc::new(VirtualKey { record }));
        assert!(p.allows("a").is_ok());
        assert_eq!(p.allows("b").unwrap_err().status().as_u16(), 403);
    }
}
