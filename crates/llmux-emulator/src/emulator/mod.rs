//! Vendor emulators: picks the dialect for a path, checks the bearer key (or the vendor's own scheme), and routes
//! to the vendor module.

pub(crate) mod dashscope;
pub(crate) mod hunyuan;
pub(crate) mod ollama;
pub(crate) mod openai;
pub(crate) mod pangu;
pub(crate) mod spark;
pub(crate) mod zhipu;

use crate::reply::{Ctx, Dialect, Incoming, Reply};
use crate::{Shared, Vendor};

/// The dialect a path is answered in.
pub(crate) fn dialect(vendor: Vendor, path: &str) -> Dialect {
    match vendor {
        Vendor::OpenAi => Dialect::OpenAi,
        Vendor::DashScope if path.starts_with("/compatible-mode/") => Dialect::DashScopeCompat,
        Vendor::DashScope => Dialect::DashScopeNative,
        Vendor::Hunyuan if path.starts_with("/v1/") => Dialect::HunyuanCompat,
        Vendor::Hunyuan => Dialect::Hunyuan,
        Vendor::Zhipu => Dialect::Zhipu,
        Vendor::Ollama if path.starts_with("/v1/") => Dialect::OllamaCompat,
        Vendor::Ollama => Dialect::Ollama,
        Vendor::Spark if path.starts_with("/v1/") => Dialect::SparkHttp,
        Vendor::Spark => Dialect::SparkWs,
        Vendor::Pangu if path.starts_with("/v3/") => Dialect::PanguIam,
        Vendor::Pangu => Dialect::Pangu,
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

/// The vendor's auth error when the request's credentials are missing or wrong (bearer key, TC3 signature, JWT,
/// Spark HTTP password, Pangu IAM token or APIG signature; the Spark WebSocket handshake is checked in
/// [`spark::websocket`]).
pub(crate) fn check_auth(ctx: &Ctx, req: &Incoming<'_>, shared: &Shared) -> Option<Reply> {
    match ctx.dialect {
        Dialect::Hunyuan => return hunyuan::check_auth(ctx, req, shared),
        Dialect::Zhipu => return zhipu::check_auth(ctx, req, &shared.api_keys),
        Dialect::Ollama | Dialect::OllamaCompat => return None,
        Dialect::SparkWs | Dialect::SparkHttp => return spark::check_auth(ctx, req, shared),
        Dialect::Pangu | Dialect::PanguIam => return pangu::check_auth(ctx, req, shared),
        Dialect::OpenAi
        | Dialect::DashScopeNative
        | Dialect::DashScopeCompat
        | Dialect::HunyuanCompat => {}
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
        Dialect::Hunyuan => hunyuan::handle(ctx, req),
        Dialect::Zhipu => zhipu::handle(ctx, req),
        Dialect::Ollama | Dialect::OllamaCompat => ollama::handle(ctx, req, &shared.models),
        Dialect::OpenAi | Dialect::DashScopeCompat | Dialect::HunyuanCompat => {
            openai::handle(ctx, req)
        }
    }
}

/// True for an error that the vendor sends with HTTP 200 (Hunyuan native), which a content filter must not replace.
pub(crate) fn is_http_200_error(ctx: &Ctx, reply: &Reply) -> bool {
    ctx.dialect == Dialect::Hunyuan && hunyuan::is_error(reply)
}
