//! Per-emulator authentication state: vendor credentials (falling back to the vendor's defaults), the emulator
//! clock, and the IAM token store.

use std::collections::BTreeMap;
use std::fmt;

use crate::auth::iam::TokenStore;
use crate::clock::Clock;
use crate::emulator::{pangu, spark};
use crate::Vendor;

/// The default credentials of a vendor (field, value); empty for vendors that only use bearer keys.
pub(crate) fn default_credentials(vendor: Vendor) -> &'static [(&'static str, &'static str)] {
    match vendor {
        Vendor::Spark => spark::DEFAULT_CREDENTIALS,
        Vendor::Pangu => pangu::DEFAULT_CREDENTIALS,
        _ => &[],
    }
}

/// Credentials, clock and issued tokens of one emulator. `Debug` shows credential names only.
pub(crate) struct AuthState {
    vendor: Vendor,
    credentials: BTreeMap<String, String>,
    pub clock: Clock,
    pub tokens: TokenStore,
}

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthState")
            .field("vendor", &self.vendor)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl AuthState {
    pub(crate) fn new(vendor: Vendor, credentials: BTreeMap<String, String>) -> AuthState {
        AuthState {
            vendor,
            credentials,
            clock: Clock::new(),
            tokens: TokenStore::new(),
        }
    }

    /// A configured credential, else the vendor's default, else "".
    pub(crate) fn credential(&self, field: &str) -> &str {
        self.credentials
            .get(field)
            .map(String::as_str)
            .or_else(|| {
                default_credentials(self.vendor)
                    .iter()
                    .find(|(f, _)| *f == field)
                    .map(|(_, v)| *v)
            })
            .unwrap_or_default()
    }
}
