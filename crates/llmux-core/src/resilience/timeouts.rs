//! Timeouts as four separate settings: connect, first event, idle gap between events, total.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::retry::humantime_serde;

/// Time limits of one call. Defaults: connect 10 s, first event 60 s, idle 60 s, total 10 min.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeouts {
    /// Establishing the connection.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// From sending the request to the response head and first stream event (time to first token).
    #[serde(with = "humantime_serde")]
    pub first_event: Duration,
    /// Longest gap between two stream events.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
    /// The whole call, retries excluded.
    #[serde(with = "humantime_serde")]
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            first_event: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
        }
    }
}
