//! Usage accounting: recorder, billing policy and prices.
