//! Vendor emulators: picks the dialect for a path, checks the bearer key, and routes to the vendor module.

pub(crate) mod dashscope;
pub(crate) mod openai;

use crate::reply::{Ctx, Dialect, Incoming, Reply};
use crate::Vendor;

/// The dialect a path is answered in.
pub(crate) fn dialect(vendor: Vendor, path: &str) -> Dialect {
    match vendor {
        Vendor::OpenAi => Dialect::OpenAi,
        Vendor::DashScope if path.starts_with("/compatible-mode/") => Dialect::DashScopeCompat,
        Vendor::DashScope => Dialect::DashScopeNative,
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

/// The vendor's 401 when the key is missing or not one of `keys`.
pub(crate) fn check_auth(ctx: &Ctx, req: &Incoming<'_>, keys: &[String]) -> Option<Reply> {
    let key = bearer(req);
    if key.as_ref().is_some_and(|k| keys.contains(k)) {
        return None;
    }
    Some(match ctx.dialect {
        Dialect::DashScopeNative => dashscope::auth_error(ctx),
        Dialect::OpenAi | Dialect::DashScopeCompat => openai::auth_error(ctx, key.as_deref()),
    })
}

/// Answers an authenticated request.
pub(crate) fn route(ctx: &Ctx, req: &Incoming<'_>) -> Reply {
    match ctx.dialect {
        Dialect::DashScopeNative => dashscope::handle(ctx, req),
        Dialect::OpenAi | Dialect::DashScopeCompat => openai::handle(ctx, req),
    }
}
