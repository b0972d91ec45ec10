//! Vendor emulators: picks the dialect for a path, checks the bearer key (or the vendor's own scheme), and routes
//! to the vendor module.

pub(crate) mod dashscope;
pub(crate) mod openai;
pub(crate) mod pangu;
pub(crate) mod spark;

use crate::reply::{Ctx, Dialect, Incoming, Reply};
use crate::{Shared, Vendor};

/// The dialect a path is answered in.
pub(crate) fn dialect(vendor: Vendor, path: &str) -> Dialect {
    match vendor {
        Vendor::OpenAi => Dialect::OpenAi,
        Vendor::DashScope if path.starts_with("/compatible-mode/") => Dialect::DashScopeCompat,
        Vendor::DashScope => Dialect::DashScopeNative,
        Vendor::Spark if path.starts_with("/v1/") => Dialect::SparkHttp,
        Vendor::Spark => Dialect::SparkWs,
        Vendor::Pangu if path.starts_with("/v3/") => Dialect::PanguIam,
        Vendor::Pangu => Dialect::Pangu,
    }
}

/// The bearer key of a request: the `Authorization` value after a case-insensitive `Bearer ` prefix, trimmed.
fn bearer(req: &Incoming<'_>) -> Option<String> {
    let v = req.header("authorization")?.trim();
    let (scheme, key) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim().to_owned())
        .filter(|k| !k.is_empty())
}

/// The vendor's 401 (or 403) when the request's credentials are missing or wrong.
pub(crate) fn check_auth(ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply> {
    match ctx.dialect {
        Dialect::SparkWs | Dialect::SparkHttp => return spark::check_auth(ctx, req, shared),
        Dialect::Pangu | Dialect::PanguIam => return pangu::check_auth(ctx, req, shared),
        Dialect::OpenAi | Dialect::DashScopeNative | Dialect::DashScopeCompat => {}
    }
    let keys = &shared.api_keys;
    let key = bearer(req);
    if key.as_ref().is_some_and(|k| keys.contains(k)) {
        return None;
    }
    Some(match ctx.dialect {
        Dialect::DashScopeNative => dashscope::auth_error(ctx),
        _ => openai::auth_error(ctx, key.as_deref()),
    })
}

/// Answers an authenticated request.
pub(crate) fn route(ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Reply {
    match ctx.dialect {
        Dialect::SparkWs | Dialect::SparkHttp => spark::handle_http(ctx, req),
        Dialect::Pangu | Dialect::PanguIam => pangu::handle(ctx, req, shared),
        Dialect::DashScopeNative => dashscope::handle(ctx, req),
        Dialect::OpenAi | Dialect::DashScopeCompat => openai::handle(ctx, req),
    }
}
