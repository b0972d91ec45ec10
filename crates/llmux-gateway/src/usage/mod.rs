//! Usage accounting: the [`recorder::UsageRecorder`] that writes the in-flight journal and
//! [`crate::store::UsageRecord`]s in group commits, the instance lease and recovery of
//! interrupted requests ([`lease`]), the billing policy for abnormal streams ([`billing`]),
//! and the price table that turns tokens into cost ([`price`]).

pub mod billing;
pub mod lease;
pub mod price;
pub mod recorder;

pub use billing::{bill, BilledUsage, OutputTally, StreamOutcome};
pub use lease::InstanceLease;
pub use price::{ModelPrice, PriceError, PriceTable};
pub use recorder::{Durability, RecorderConfig, RecorderError, UsageRecorder};
