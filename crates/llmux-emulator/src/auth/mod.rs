//! Authentication schemes the emulators verify themselves, written from the vendors' docs and checked against the
//! official-SDK vectors in `fixtures/` (never with `llmux-core`'s signers).

pub(crate) mod apig;
pub(crate) mod encoding;
pub(crate) mod iam;
pub(crate) mod spark_url;
pub(crate) mod state;
