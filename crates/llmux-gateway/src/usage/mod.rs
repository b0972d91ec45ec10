//! Usage accounting: the batching [`recorder::UsageRecorder`] that writes
//! [`crate::store::UsageRecord`]s off the request path, the billing policy for abnormal streams
//! ([`billing`]), and the price table that turns tokens into cost ([`price`]).

pub mod billing;
pub mod price;
pub mod recorder;

pub use billing::{bill, BilledUsage, OutputTally, StreamOutcome};
pub use price::{ModelPrice, PriceError, PriceTable};
pub use recorder::{RecorderConfig, RecorderError, UsageRecorder};
