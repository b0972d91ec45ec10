//! The vendor emulators and their one table.
//!
//! Each vendor is one file here: a [`VendorEmulator`] (its id, default key, credentials and models, base URLs,
//! the provider ids it serves with their environment, and the [`Dialect`] that answers each path), the
//! public [`Vendor`] constant naming it (`impl Vendor { pub const X: Vendor = … }`, documented there), and its
//! dialects: request handlers, auth check, the error builders faults use, and the stream fault frames.
//! [`TABLE`] lists the vendors (each `table!` row also declares the vendor's module); nothing outside a vendor's
//! file matches on vendors or dialects, so adding a vendor is one new file and one row.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::Response;
use bytes::Bytes;
use futures::future::BoxFuture;

use crate::reply::{Ctx, Incoming, Reply};
use crate::{Shared, Vendor};

/// Declares each vendor's module and its row of [`TABLE`]: `module => constant`, where the module (a file here)
/// defines `Vendor::<constant>`.
macro_rules! table {
    ($($module:ident => $vendor:ident),* $(,)?) => {
        $(mod $module;)*

        /// Every vendor emulator, one row each, in the order `llmux emulate` starts them.
        pub(crate) const TABLE: &[Vendor] = &[$(Vendor::$vendor),*];
    };
}

table! {
    openai => OpenAi,
    dashscope => DashScope,
    hunyuan => Hunyuan,
    zhipu => Zhipu,
    ollama => Ollama,
    spark => Spark,
    pangu => Pangu,
    anthropic => Anthropic,
    gemini => Gemini,
}

/// One vendor's emulator: what [`crate::EmulatorConfig::new`] starts with, where clients point, and which
/// dialect answers a path.
pub(crate) trait VendorEmulator: Send + Sync + 'static {
    /// The stable provider id (`openai`, `dashscope`, …).
    fn id(&self) -> &'static str;
    /// The key accepted by default (crate docs of each [`Vendor`] constant say what kind of key it is).
    fn default_key(&self) -> &'static str;
    /// Credentials other than keys, (field, value); a field missing from the configuration falls back to these.
    fn default_credentials(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// Models known by default (empty = any model).
    fn default_models(&self) -> &'static [&'static str] {
        &[]
    }
    /// The vendor's base URL on `addr`.
    fn base_url(&self, addr: SocketAddr) -> String;
    /// The base URL of the vendor's OpenAI-compatible endpoint on `addr`, if it has one.
    fn compat_base_url(&self, _addr: SocketAddr) -> Option<String> {
        None
    }
    /// The provider ids this emulator serves and the variables that point each at it.
    fn providers(&self) -> &'static [ProviderEnv];
    /// The dialect that answers a request for `path`.
    fn dialect(&self, path: &str) -> &'static dyn Dialect;
}

/// A provider id an emulator serves, and the conventional variables that point a client of it at the emulator.
#[derive(Debug)]
pub(crate) struct ProviderEnv {
    /// The provider id (`openai`, `dashscope-compat`, …).
    pub id: &'static str,
    /// The base URL its clients use.
    pub base: Base,
    /// (variable, value) pairs.
    pub vars: &'static [(&'static str, EnvValue)],
}

/// Which base URL a provider's clients use.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Base {
    /// [`VendorEmulator::base_url`].
    Vendor,
    /// [`VendorEmulator::compat_base_url`].
    Compat,
    /// `http://127.0.0.1:P` followed by this path (another protocol the vendor serves under its own path).
    Path(&'static str),
}

/// The value of one variable of a [`ProviderEnv`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum EnvValue {
    /// The base URL the provider's clients use.
    BaseUrl,
    /// The emulator's first accepted key.
    Key,
    /// A credential by field name (configured, else the vendor's default).
    Credential(&'static str),
}

/// A dialect answers its own connection instead of a [`Reply`] (Spark's WebSocket handshake and session).
pub(crate) type Takeover = fn(Arc<Shared>, Parts, Ctx) -> BoxFuture<'static, Response<Body>>;

/// One wire dialect of a vendor (a vendor may speak several, chosen by path): the request id format, the auth
/// check, the handlers, and everything faults need to misbehave in the vendor's own format.
pub(crate) trait Dialect: Send + Sync + fmt::Debug {
    /// The request id of request number `seq` (headers and bodies).
    fn request_id(&self, seq: u64) -> String;
    /// The response header that carries the request id.
    fn request_id_header(&self) -> &'static str {
        "x-request-id"
    }
    /// The content type of a streamed answer.
    fn sse_content_type(&self) -> &'static str {
        "text/event-stream"
    }
    /// The vendor's refusal when the request's credentials are missing or wrong, `None` when they pass.
    fn check_auth(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply>;
    /// Answers an authenticated request.
    fn handle(&self, ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Reply;
    /// The vendor's own error body for an HTTP status (`FaultKind::Status` without a body).
    fn status_error(&self, ctx: &Ctx, status: u16) -> Reply;
    /// `FaultKind::QuotaExhausted`: the vendor's out-of-credit error.
    fn quota_error(&self, ctx: &Ctx) -> Reply;
    /// `FaultKind::ErrorBody200`: HTTP 200 carrying the vendor's server-error body.
    fn error_body_200(&self, ctx: &Ctx) -> Reply;
    /// `FaultKind::ErrorEvent` on a whole answer: the vendor's content-moderation error.
    fn content_filter_error(&self, ctx: &Ctx) -> Reply;
    /// `FaultKind::ErrorEvent` in a stream: the vendor's mid-stream error frame; `sent` frames went before it.
    fn stream_error_frame(&self, ctx: &Ctx, sent: usize) -> Bytes;
    /// `FaultKind::MalformedFrame` in a stream: a frame in the vendor's framing whose data is truncated JSON.
    fn malformed_frame(&self, ctx: &Ctx, sent: usize) -> Bytes;
    /// True for an error the vendor sends with HTTP 200, which a content-filter fault must not replace.
    fn is_http_200_error(&self, _reply: &Reply) -> bool {
        false
    }
    /// Set when this dialect answers on its own connection (a WebSocket) instead of through a [`Reply`].
    fn takeover(&self) -> Option<Takeover> {
        None
    }
}

/// The bearer key of a request: the `Authorization` value after a case-insensitive `Bearer ` prefix, trimmed.
pub(crate) fn bearer(req: &Incoming<'_>) -> Option<String> {
    let v = req.header("authorization")?.trim();
    let (scheme, key) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim().to_owned())
        .filter(|k| !k.is_empty())
}

/// `None` when the request's bearer key is one of the configured keys, else `refuse(key)` (the key sent, if any).
pub(crate) fn check_bearer(
    req: &Incoming<'_>,
    shared: &Shared,
    refuse: impl FnOnce(Option<&str>) -> Reply,
) -> Option<Reply> {
    let key = bearer(req);
    if key.as_ref().is_some_and(|k| shared.api_keys.contains(k)) {
        return None;
    }
    Some(refuse(key.as_deref()))
}

/// The request id `00000000-0000-4000-8000-<seq as 12 hex digits>` (DashScope's uuid-like format, which several
/// vendors share).
pub(crate) fn uuid_request_id(seq: u64) -> String {
    format!("00000000-0000-4000-8000-{seq:012x}")
}

/// The request id `req_emu<seq as 12 hex digits>` (OpenAI's `x-request-id` shape).
pub(crate) fn emu_request_id(seq: u64) -> String {
    format!("req_emu{seq:012x}")
}
