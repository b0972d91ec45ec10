//! `/admin/prices`, guarded by `server.admin_key`: `GET /admin/prices` lists the effective
//! price table (each entry with its layer: `builtin`, `config` or `api`), `PUT
//! /admin/prices/{model}` sets an override kept in the store, `DELETE /admin/prices/{model}`
//! removes one. Overrides apply at once on this gateway and within
//! [`crate::serve::PRICE_REFRESH`] on the others sharing the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::admin::{guarded, store_err, store_of};
use crate::error::ApiError;
use crate::ingress::openai::OpenAiError;
use crate::state::{unix_now, AppState, RequestCtx};
use crate::usage::{ModelPrice, PriceEntry, PriceSource};

/// The longest model name (in bytes) an override may be set for.
pub const MAX_MODEL_NAME_BYTES: usize = 256;
/// The largest `PUT /admin/prices/{model}` body in bytes.
pub const MAX_PRICE_BODY_BYTES: usize = 4096;

/// `GET /admin/prices`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PriceList {
    /// The accounting currency: usage records, cost budgets and `in_account` prices are in it.
    pub currency: String,
    /// Units of the accounting currency per unit of each other currency.
    pub exchange_rates: BTreeMap<String, f64>,
    /// The effective table, one entry per key, sorted by key.
    pub prices: Vec<PriceEntry>,
}

/// `PUT /admin/prices/{model}`: the override as set.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PriceSet {
    /// The price as it now applies to the model.
    pub price: PriceEntry,
}

/// `DELETE /admin/prices/{model}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PriceDeleted {
    /// The model whose override was removed (its configured or built-in price applies again).
    pub deleted: String,
}

/// `GET /admin/prices`: the effective price table.
#[utoipa::path(
    get,
    path = "/admin/prices",
    tag = "admin",
    operation_id = "adminListPrices",
    summary = "The effective price table: built-in rows, configured prices and API overrides",
    responses(
        (status = 200, description = "Every priced key, the highest layer winning.", body = PriceList),
        crate::openapi::AdminErrors,
    ),
    security(("admin_key" = []))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        let money = state.prices.money();
        Ok(Json(PriceList {
            currency: money.currency.to_string(),
            exchange_rates: money
                .rates
                .iter()
                .map(|(c, r)| (c.to_string(), *r))
                .collect(),
            prices: state.prices.entries(),
        })
        .into_response())
    })
    .await
}

/// `PUT /admin/prices/{model}` with a `ModelPrice` body: sets the model's price over the
/// configured and built-in ones (by public name, or `provider/upstream_model`).
#[utoipa::path(
    put,
    path = "/admin/prices/{model}",
    tag = "admin",
    operation_id = "adminSetPrice",
    summary = "Set a price override (kept in the store)",
    params(("model" = String, Path, description = "A public model name or `provider/upstream_model` (at most 256 bytes).")),
    request_body(content = ModelPrice, content_type = "application/json",
        description = "Prices per 1M tokens: finite, from 0 to 1,000,000; `currency` must be the accounting currency or have an exchange rate."),
    responses(
        (status = 200, description = "The price as it now applies.", body = PriceSet),
        (status = 400, description = "Invalid model name or price (the message and `param` name the field), or no database is configured (`unsupported`).", body = OpenAiError),
        (status = 413, description = "The body is too large.", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
    ),
    security(("admin_key" = []))
)]
pub async fn set(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    axum::extract::Path(model): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        if body.len() > MAX_PRICE_BODY_BYTES {
            return Err(ApiError::too_large(MAX_PRICE_BODY_BYTES));
        }
        check_model(&model)?;
        let price: ModelPrice = crate::ingress::openai::from_json(&body)?;
        if !price.is_valid() {
            return Err(ApiError::invalid(format!(
                "every price must be a finite number from 0 to {} per 1M tokens",
                crate::usage::price::MAX_PRICE_PER_MTOK
            )));
        }
        let money = state.prices.money();
        if money.convert(price).is_none() {
            let c = price.currency.unwrap_or(money.currency);
            return Err(ApiError::invalid(format!(
                "{c} is not the accounting currency ({}) and server.exchange_rates has no rate for it",
                money.currency
            ))
            .param("currency"));
        }
        store_of(&state)?
            .put_price_override(&model, &price, unix_now())
            .await
            .map_err(|e| store_err(&e))?;
        state.prices.set_override(&model, price);
        tracing::info!(model = %model, "price override set through the admin API");
        let money = state.prices.money();
        let shown = ModelPrice {
            currency: Some(price.currency.unwrap_or(money.currency)),
            ..price
        };
        Ok(Json(PriceSet {
            price: PriceEntry {
                model,
                source: PriceSource::Api,
                price: Some(shown),
                in_account: money.convert(price),
                source_url: None,
                read: None,
                note: None,
            },
        })
        .into_response())
    })
    .await
}

/// `DELETE /admin/prices/{model}`: removes an API override.
#[utoipa::path(
    delete,
    path = "/admin/prices/{model}",
    tag = "admin",
    operation_id = "adminDeletePrice",
    summary = "Remove a price override (the configured or built-in price applies again)",
    params(("model" = String, Path, description = "The key the override was set under.")),
    responses(
        (status = 200, description = "Removed.", body = PriceDeleted),
        (status = 400, description = "Invalid model name, or no database is configured (`unsupported`).", body = OpenAiError),
        (status = 404, description = "No override for this model (`price_not_found`).", body = OpenAiError),
        crate::openapi::AdminErrors,
        crate::openapi::StoreFailed,
    ),
    security(("admin_key" = []))
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestCtx>,
    axum::extract::Path(model): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    guarded(state, ctx, headers, |state| async move {
        check_model(&model)?;
        let found = store_of(&state)?
            .delete_price_override(&model)
            .await
            .map_err(|e| store_err(&e))?;
        let here = state.prices.remove_override(&model);
        if !found && !here {
            let mut e = ApiError::new(
                llmux_core::ErrorKind::NotFound,
                format!("no price override for `{model}`"),
            );
            e.code = Some("price_not_found");
            return Err(e);
        }
        tracing::info!(model = %model, "price override removed through the admin API");
        Ok(Json(PriceDeleted { deleted: model }).into_response())
    })
    .await
}

/// A model name an override may be keyed by: 1 to [`MAX_MODEL_NAME_BYTES`] bytes, no control
/// characters or surrounding spaces.
fn check_model(model: &str) -> Result<(), ApiError> {
    let ok = !model.is_empty()
        && model.len() <= MAX_MODEL_NAME_BYTES
        && model.trim() == model
        && !model.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "the model must be 1 to {MAX_MODEL_NAME_BYTES} bytes without control characters or surrounding spaces"
        ))
        .param("model"))
    }
}
