//! Zhipu's chat body: the OpenAI body plus `do_sample`, `user_id` and `thinking`.

use serde::Serialize;

use crate::providers::openai_compat::wire::ChatBody;

/// `POST /chat/completions`.
#[derive(Debug, Serialize)]
pub struct ZhipuBody<'a> {
    /// The OpenAI-shaped fields (and `extra`).
    #[serde(flatten)]
    pub base: ChatBody<'a>,
    /// `false` for greedy decoding (a request temperature of 0 or below).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub do_sample: Option<bool>,
    /// The end-user id (the request's `user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
    /// `{"type": "enabled" | "disabled"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingType>,
}

/// `thinking`.
#[derive(Debug, Serialize)]
pub struct ThinkingType {
    /// `enabled` or `disabled`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}
