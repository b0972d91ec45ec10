//! The environment that points a client at a running emulator: for each provider id the
//! emulator serves, the provider's conventional variables (base URL and credentials) set to
//! this emulator's address and accepted credentials, as each vendor's [`ProviderEnv`] rows say.
//! `llmux emulate` prints them; tests feed them to the client's settings loader.

use crate::emulator::{Base, EnvValue, ProviderEnv, TABLE};
use crate::{Emulator, Vendor};

impl Vendor {
    /// Every vendor, in the order of the emulator table (the order `llmux emulate` starts them).
    pub const ALL: &'static [Vendor] = TABLE;

    /// The provider ids this vendor's emulator serves (`openai` also serves the other
    /// OpenAI-style presets).
    pub fn provider_ids(self) -> Vec<&'static str> {
        self.0.providers().iter().map(|p| p.id).collect()
    }

    /// The vendor whose emulator serves provider `id`.
    pub fn for_provider(id: &str) -> Option<Vendor> {
        Vendor::ALL
            .iter()
            .copied()
            .find(|v| v.provider(id).is_some())
    }

    fn provider(self, id: &str) -> Option<&'static ProviderEnv> {
        self.0.providers().iter().find(|p| p.id == id)
    }
}

impl Emulator {
    fn first_key(&self) -> String {
        self.shared
            .api_keys
            .first()
            .cloned()
            .unwrap_or_else(|| self.vendor.default_key().to_owned())
    }

    /// The base URL a client of provider `id` should use with this emulator.
    pub fn base_url_for(&self, id: &str) -> Option<String> {
        match self.vendor.provider(id)?.base {
            Base::Vendor => Some(self.base_url()),
            Base::Compat => self.compat_base_url(),
            Base::Path(path) => Some(format!("{}{path}", self.root_url())),
        }
    }

    /// The variables (name, value) that point provider `id` at this emulator, named as the
    /// provider's conventional environment variables; `None` if this emulator does not serve `id`.
    pub fn env_for(&self, id: &str) -> Option<Vec<(String, String)>> {
        let provider = self.vendor.provider(id)?;
        let base = self.base_url_for(id)?;
        let value = |v: EnvValue| match v {
            EnvValue::BaseUrl => base.clone(),
            EnvValue::Key => self.first_key(),
            EnvValue::Credential(field) => self.shared.auth.credential(field).to_owned(),
        };
        Some(
            provider
                .vars
                .iter()
                .map(|(name, v)| ((*name).to_owned(), value(*v)))
                .collect(),
        )
    }
}
