//! Per-key limits.
