//! OpenAI: chat completions (plain and streamed), embeddings and models, over the shared
//! OpenAI codec. The same provider serves any OpenAI-style base URL.

use super::openai_compat::{OpenAiCompat, OPENAI};
use super::{CredentialSpec, ProviderSpec};

/// The registry row.
pub const SPEC: ProviderSpec = ProviderSpec {
    id: "openai",
    description: "OpenAI, or any OpenAI-compatible endpoint via OPENAI_BASE_URL / --base-url",
    default_base_url: "https://api.openai.com/v1",
    base_url_env: "OPENAI_BASE_URL",
    region_env: None,
    credentials: &[CredentialSpec {
        field: "api_key",
        env: &["OPENAI_API_KEY"],
        optional: false,
    }],
    models: &[
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "o3-mini",
        "text-embedding-3-small",
        "text-embedding-3-large",
    ],
    build: |row, settings| OpenAiCompat::from_settings(OPENAI, row, &settings),
};
