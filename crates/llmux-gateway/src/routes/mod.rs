//! HTTP handlers outside the model pipeline, one file per endpoint family: the models list,
//! health and metrics, the admin API (teams in their own file) and the dashboard. The model endpoints (chat,
//! embeddings) are declared by their dialects ([`crate::ingress`]) and served by the
//! [`crate::pipeline`].

pub mod admin;
pub mod dashboard;
pub mod health;
pub mod models;
pub mod teams;

pub(crate) use crate::pipeline::fail;
