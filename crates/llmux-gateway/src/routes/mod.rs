//! HTTP handlers outside the model pipeline, one file per endpoint family: the models list,
//! health and metrics, the admin API (channels in [`channels`], price overrides in [`prices`], teams in [`teams`]) and the dashboard. The model endpoints (chat,
//! embeddings) are declared by their dialects ([`crate::ingress`]) and served by the
//! [`crate::pipeline`].

pub mod admin;
pub mod channels;
pub mod dashboard;
pub mod health;
pub mod models;
pub mod prices;
pub mod teams;

pub(crate) use crate::pipeline::fail;
