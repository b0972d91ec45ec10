//! Per-emulator authentication state: vendor credentials (falling back to the vendor's defaults) and the IAM token
//! store. (The emulator clock, which every vendor reads, lives in `Shared`.)

use std::collections::BTreeMap;
use std::fmt;

use crate::auth::iam::TokenStore;
use crate::Vendor;

/// Credentials and issued tokens of one emulator. `Debug` shows credential names only.
pub(crate) struct AuthState {
    vendor: Vendor,
    credentials: BTreeMap<String, String>,
    pub tokens: TokenStore,
}

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthState")
            .field("vendor", &self.vendor)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl AuthState {
    pub(crate) fn new(vendor: Vendor, credentials: BTreeMap<String, String>) -> AuthState {
        AuthState {
            vendor,
            credentials,
            tokens: TokenStore::new(),
        }
    }

    /// A configured credential, else the vendor's default, else `None`.
    pub(crate) fn lookup(&self, field: &str) -> Option<&str> {
        self.credentials.get(field).map(String::as_str).or_else(|| {
            self.vendor
                .0
                .default_credentials()
                .iter()
                .find(|(f, _)| *f == field)
                .map(|(_, v)| *v)
        })
    }

    /// A configured credential, else the vendor's default, else "".
    pub(crate) fn credential(&self, field: &str) -> &str {
        self.lookup(field).unwrap_or_default()
    }
}
