//! A conversation kept across turns: model, system prompt and the messages exchanged so far.

use llmux_core::{ChatRequest, ChatResponse, Message, Role};
use serde_json::{json, Value};

use crate::error::Result;
use crate::request::RequestArgs;

/// The state the REPL keeps (and a one-shot chat uses for its single turn).
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    model: String,
    system: Option<String>,
    messages: Vec<Message>,
}

impl Conversation {
    /// An empty conversation with `model` (`provider/model`) and an optional system prompt.
    pub fn new(model: impl Into<String>, system: Option<String>) -> Self {
        Conversation {
            model: model.into(),
            system,
            messages: Vec::new(),
        }
    }

    /// A conversation resumed from stored messages (system prompt kept apart, as in [`Self::new`]).
    pub fn restore(
        model: impl Into<String>,
        system: Option<String>,
        messages: Vec<Message>,
    ) -> Self {
        Conversation {
            model: model.into(),
            system,
            messages,
        }
    }

    /// The messages exchanged so far, without the system prompt.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The system prompt.
    pub fn system(&self) -> Option<&str> {
        self.system.as_deref()
    }

    /// The `provider/model` address.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Switches the model; the conversation is kept.
    pub fn set_model(&mut self, model: impl Into<String>) {
        self.model = model.into();
    }

    /// Sets or removes the system prompt.
    pub fn set_system(&mut self, system: Option<String>) {
        self.system = system;
    }

    /// Forgets the exchanged messages; the system prompt and model stay.
    pub fn clear(&mut self) {
        self.messages.clear();
    }

    /// Every message a request carries: system prompt first, then the exchange.
    pub fn all_messages(&self) -> Vec<Message> {
        let mut all = Vec::with_capacity(self.messages.len() + 2);
        if let Some(s) = &self.system {
            all.push(Message::system(s.as_str()));
        }
        all.extend(self.messages.iter().cloned());
        all
    }

    /// The request for the next turn, `user` appended; validated, so bad values fail here,
    /// before anything is sent. The conversation itself is unchanged until [`Self::record`].
    pub fn request(&self, user: &str, args: &RequestArgs) -> Result<ChatRequest> {
        let mut messages = self.all_messages();
        messages.push(Message::user(user));
        let mut req = ChatRequest::new(self.model.as_str(), messages);
        args.apply(&mut req);
        req.validate()?;
        Ok(req)
    }

    /// Keeps a completed turn: the user's message and the answer.
    pub fn record(&mut self, user: &str, answer: &ChatResponse) {
        self.messages.push(Message::user(user));
        let mut reply = answer
            .choices
            .first()
            .map(|c| c.message.clone())
            .unwrap_or_else(|| Message::assistant(answer.text().into_owned()));
        reply.role = Role::Assistant;
        self.messages.push(reply);
    }

    /// `{"model": …, "messages": […]}` with the system prompt as the first message.
    pub fn to_json(&self) -> Value {
        json!({ "model": self.model, "messages": self.all_messages() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llmux_core::{stream::response_to_events, StreamAccumulator};

    fn answer(text: &str) -> ChatResponse {
        let mut acc = StreamAccumulator::new();
        acc.push(&llmux_core::StreamEvent::TextDelta { text: text.into() })
            .unwrap();
        acc.push(&llmux_core::StreamEvent::Finished {
            reason: llmux_core::FinishReason::Stop,
        })
        .unwrap();
        let r = acc.finish().unwrap();
        assert!(!response_to_events(&r).is_empty());
        r
    }

    #[test]
    fn turns_accumulate_and_clear_keeps_the_system_prompt() {
        let mut c = Conversation::new("dashscope/qwen-plus", Some("be brief".into()));
        c.record("hi", &answer("You said: hi"));
        let req = c.request("again", &RequestArgs::default()).unwrap();
        let roles: Vec<_> = req.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::System, Role::User, Role::Assistant, Role::User]
        );
        assert_eq!(req.messages[2].content.text(), "You said: hi");
        assert_eq!(req.model, "dashscope/qwen-plus");
        c.clear();
        let req = c.request("x", &RequestArgs::default()).unwrap();
        assert_eq!(req.messages.len(), 2);
        assert_eq!(req.messages[0].content.text(), "be brief");
    }

    #[test]
    fn request_does_not_change_the_conversation() {
        let c = Conversation::new("openai/gpt-4o", None);
        c.request("hi", &RequestArgs::default()).unwrap();
        assert_eq!(c.to_json()["messages"], serde_json::json!([]));
    }

    #[test]
    fn invalid_values_fail_before_sending() {
        let c = Conversation::new("openai/gpt-4o", None);
        let args = RequestArgs {
            temperature: Some(3.0),
            ..Default::default()
        };
        let err = c.request("hi", &args).unwrap_err().to_string();
        assert!(err.contains("temperature"), "{err}");
    }

    #[test]
    fn saved_json_has_model_and_messages() {
        let mut c = Conversation::new("openai/gpt-4o", Some("sys".into()));
        c.record("hi", &answer("yo"));
        c.set_model("dashscope/qwen-max");
        let v = c.to_json();
        assert_eq!(v["model"], "dashscope/qwen-max");
        assert_eq!(v["messages"][0]["role"], "system");
        assert_eq!(v["messages"][1]["content"], "hi");
        assert_eq!(v["messages"][2]["role"], "assistant");
        assert_eq!(v["messages"][2]["content"], "yo");
    }
}
