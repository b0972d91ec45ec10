//! Usage accounting: the [`recorder::UsageRecorder`] that journals requests in flight and
//! writes [`crate::store::UsageRecord`]s to the store in batches, the local file journal that
//! keeps them off the request's path ([`journal`]), the instance lease and recovery of
//! interrupted requests from the store's journal ([`lease`]), the billing policy for abnormal
//! streams ([`billing`]), and the price table that turns tokens into cost ([`price`], over the
//! built-in rows of [`builtin_prices`]).

pub mod billing;
pub mod builtin_prices;
pub mod journal;
pub mod lease;
pub mod price;
pub mod recorder;

pub use billing::{bill, BilledUsage, OutputTally, StreamOutcome};
pub use journal::{JournalConfig, JournalError, LedgerJournal, Recovery};
pub use lease::InstanceLease;
pub use price::{
    Currency, Matched, ModelPrice, Money, PriceEntry, PriceError, PriceSource, PriceTable, Tokens,
    Unpriced,
};
pub use recorder::{Durability, Journaled, RecorderConfig, RecorderError, UsageRecorder};
