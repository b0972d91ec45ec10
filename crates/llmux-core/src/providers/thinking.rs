//! Thinking settings against what a vendor's API takes: each provider declares its
//! [`ThinkingSupport`] in its own module, and [`ThinkingSupport::resolve`] turns a request's
//! [`Thinking`] into the [`ThinkingPlan`] the provider writes in its own fields, or into an
//! `unsupported` error that names the field the vendor cannot take. Nothing is dropped.

use crate::error::{Error, Result};
use crate::types::{ReasoningEffort, Thinking};

/// How a vendor turns thinking on or off.
#[derive(Debug, Clone, Copy)]
pub enum Switch {
    /// A request field does (DashScope `enable_thinking`, Zhipu `thinking.type`, Ollama
    /// `think`…). A budget or an effort alone turns it on.
    Field,
    /// The model decides (DeepSeek: `deepseek-reasoner` thinks, `deepseek-chat` does not):
    /// the function says whether `model` thinks; asking for the other is an error, asking for
    /// what it does sends nothing.
    ByModel(fn(&str) -> bool),
    /// Thinking is turned off with the effort `none`, and there is no switch to turn it on
    /// without an effort (OpenAI's `reasoning_effort`).
    OffAsEffortNone,
    /// No control at all.
    None,
}

/// How a vendor takes a reasoning effort.
#[derive(Debug, Clone, Copy)]
pub enum EffortSupport {
    /// As one of these levels, named as [`ReasoningEffort::as_str`] spells them.
    Levels(&'static [ReasoningEffort]),
    /// As the thinking budget of [`ReasoningEffort::budget_tokens`] (vendors that take a
    /// budget but no level).
    AsBudget,
    /// Not at all.
    None,
}

/// What thinking settings a vendor's API takes.
#[derive(Debug, Clone, Copy)]
pub struct ThinkingSupport {
    /// On or off.
    pub switch: Switch,
    /// A budget in tokens.
    pub budget: bool,
    /// A reasoning effort.
    pub effort: EffortSupport,
}

impl ThinkingSupport {
    /// No thinking setting at all.
    pub const NONE: ThinkingSupport = ThinkingSupport {
        switch: Switch::None,
        budget: false,
        effort: EffortSupport::None,
    };

    /// A switch only (Hunyuan `EnableThinking`, Zhipu `thinking`).
    pub const SWITCH: ThinkingSupport = ThinkingSupport {
        switch: Switch::Field,
        budget: false,
        effort: EffortSupport::None,
    };

    /// A switch and a budget, an effort sent as a budget (DashScope, Anthropic).
    pub const SWITCH_AND_BUDGET: ThinkingSupport = ThinkingSupport {
        switch: Switch::Field,
        budget: true,
        effort: EffortSupport::AsBudget,
    };

    /// Checks `thinking` against what `provider` takes for the upstream `model`, and says what
    /// to send. A setting the vendor cannot take is an [`crate::ErrorKind::Unsupported`] error
    /// naming the field (`thinking`, `thinking_budget`, `reasoning_effort`).
    pub fn resolve(
        &self,
        provider: &'static str,
        model: &str,
        thinking: Option<&Thinking>,
    ) -> Result<ThinkingPlan> {
        let Some(t) = thinking.filter(|t| !t.is_empty()) else {
            return Ok(ThinkingPlan::default());
        };
        let mut plan = ThinkingPlan {
            budget_tokens: t.budget_tokens,
            ..ThinkingPlan::default()
        };
        if let Some(effort) = t.effort {
            match self.effort {
                EffortSupport::Levels(levels) if levels.contains(&effort) => {
                    plan.effort = Some(effort);
                }
                EffortSupport::Levels(levels) => {
                    let names: Vec<&str> = levels.iter().map(|l| l.as_str()).collect();
                    return Err(unsupported(
                        provider,
                        "reasoning_effort",
                        format!(
                            "`reasoning_effort` `{effort}` is not supported by provider {provider} (it takes {})",
                            names.join(", ")
                        ),
                    ));
                }
                EffortSupport::AsBudget => plan.budget_tokens = Some(effort.budget_tokens()),
                EffortSupport::None => {
                    return Err(unsupported(
                        provider,
                        "reasoning_effort",
                        format!(
                            "`reasoning_effort` is not supported by provider {provider}{}",
                            self.hint()
                        ),
                    ))
                }
            }
        }
        if t.budget_tokens.is_some() && !self.budget {
            return Err(unsupported(
                provider,
                "thinking_budget",
                format!(
                    "`thinking_budget` is not supported by provider {provider}{}",
                    self.hint()
                ),
            ));
        }
        match self.switch {
            Switch::Field => plan.enabled = t.wanted(),
            Switch::ByModel(thinks) => {
                let does = thinks(model);
                if t.enabled.is_some_and(|on| on != does) {
                    let (state, verb) = if does {
                        ("always thinks", "off")
                    } else {
                        ("does not think", "on")
                    };
                    return Err(unsupported(
                        provider,
                        "thinking",
                        format!(
                            "`thinking`: {provider} model `{model}` {state}; thinking cannot be turned {verb} (choose a model that {})",
                            if does { "does not think" } else { "thinks" }
                        ),
                    ));
                }
            }
            Switch::OffAsEffortNone => match t.enabled {
                Some(false) => plan.enabled = Some(false),
                Some(true) if plan.effort.is_none() => {
                    return Err(unsupported(
                        provider,
                        "thinking",
                        format!(
                            "`thinking` (on or off) is not supported by provider {provider}: give `reasoning_effort`"
                        ),
                    ))
                }
                _ => {}
            },
            Switch::None => {
                if t.enabled.is_some() {
                    return Err(unsupported(
                        provider,
                        "thinking",
                        format!("`thinking` is not supported by provider {provider}"),
                    ));
                }
            }
        }
        Ok(plan)
    }

    /// What the vendor takes instead, for an error message.
    fn hint(&self) -> &'static str {
        match (self.switch, self.effort) {
            (_, EffortSupport::Levels(_)) => " (it takes `reasoning_effort`)",
            (Switch::Field, _) => " (it takes thinking on or off only)",
            (Switch::ByModel(_), _) => " (the model decides whether it thinks)",
            (Switch::OffAsEffortNone | Switch::None, _) => "",
        }
    }
}

/// What a provider sends for a request's thinking settings (see [`ThinkingSupport::resolve`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThinkingPlan {
    /// Turn thinking on or off; `None` sends nothing (the model's default).
    pub enabled: Option<bool>,
    /// The budget in tokens (an effort of a vendor that takes budgets lands here).
    pub budget_tokens: Option<u32>,
    /// The effort level, for vendors that take one.
    pub effort: Option<ReasoningEffort>,
}

fn unsupported(provider: &'static str, field: &'static str, message: String) -> Error {
    Error::unsupported(message)
        .with_provider(provider)
        .with_param(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const OPENAI: ThinkingSupport = ThinkingSupport {
        switch: Switch::OffAsEffortNone,
        budget: false,
        effort: EffortSupport::Levels(&ReasoningEffort::ALL),
    };
    const DEEPSEEK: ThinkingSupport = ThinkingSupport {
        switch: Switch::ByModel(|m| m.contains("reasoner")),
        budget: false,
        effort: EffortSupport::None,
    };
    const OLLAMA: ThinkingSupport = ThinkingSupport {
        switch: Switch::Field,
        budget: false,
        effort: EffortSupport::Levels(&[
            ReasoningEffort::Low,
            ReasoningEffort::Medium,
            ReasoningEffort::High,
        ]),
    };

    fn plan(s: ThinkingSupport, model: &str, t: Thinking) -> Result<ThinkingPlan> {
        s.resolve("p", model, Some(&t))
    }

    fn refused(s: ThinkingSupport, model: &str, t: Thinking, field: &str, needle: &str) {
        let err = plan(s, model, t).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert_eq!(err.param(), Some(field), "{err}");
        assert!(err.message().contains(needle), "{}", err.message());
    }

    #[test]
    fn issue_18_a_budget_or_an_effort_alone_turns_a_switch_on() {
        let s = ThinkingSupport::SWITCH_AND_BUDGET;
        assert_eq!(
            plan(s, "m", Thinking::budget(300)).unwrap(),
            ThinkingPlan {
                enabled: Some(true),
                budget_tokens: Some(300),
                effort: None
            }
        );
        // A vendor with budgets but no levels gets the effort's budget.
        assert_eq!(
            plan(s, "m", Thinking::effort(ReasoningEffort::Low)).unwrap(),
            ThinkingPlan {
                enabled: Some(true),
                budget_tokens: Some(1024),
                effort: None
            }
        );
        assert_eq!(
            plan(s, "m", Thinking::switch(false)).unwrap().enabled,
            Some(false)
        );
        assert_eq!(s.resolve("p", "m", None).unwrap(), ThinkingPlan::default());
    }

    #[test]
    fn issue_18_what_a_vendor_cannot_take_is_refused_naming_the_field() {
        let s = ThinkingSupport::SWITCH;
        refused(
            s,
            "m",
            Thinking::budget(300),
            "thinking_budget",
            "`thinking_budget` is not supported by provider p (it takes thinking on or off only)",
        );
        refused(
            s,
            "m",
            Thinking::effort(ReasoningEffort::High),
            "reasoning_effort",
            "`reasoning_effort` is not supported by provider p",
        );
        refused(
            ThinkingSupport::NONE,
            "m",
            Thinking::switch(true),
            "thinking",
            "`thinking` is not supported by provider p",
        );
        refused(
            OPENAI,
            "m",
            Thinking::budget(300),
            "thinking_budget",
            "(it takes `reasoning_effort`)",
        );
        refused(
            OPENAI,
            "m",
            Thinking::switch(true),
            "thinking",
            "give `reasoning_effort`",
        );
        refused(OLLAMA, "m", Thinking::effort(ReasoningEffort::Minimal), "reasoning_effort", "`reasoning_effort` `minimal` is not supported by provider p (it takes low, medium, high)");
    }

    #[test]
    fn issue_18_openai_takes_levels_and_off() {
        assert_eq!(
            plan(OPENAI, "m", Thinking::effort(ReasoningEffort::XHigh))
                .unwrap()
                .effort,
            Some(ReasoningEffort::XHigh)
        );
        assert_eq!(
            plan(OPENAI, "m", Thinking::switch(false)).unwrap().enabled,
            Some(false)
        );
        let both = Thinking {
            enabled: Some(true),
            effort: Some(ReasoningEffort::Low),
            ..Thinking::default()
        };
        assert_eq!(
            plan(OPENAI, "m", both).unwrap().effort,
            Some(ReasoningEffort::Low)
        );
    }

    #[test]
    fn issue_18_deepseek_thinks_by_model() {
        assert_eq!(
            plan(DEEPSEEK, "deepseek-reasoner", Thinking::switch(true)).unwrap(),
            ThinkingPlan::default()
        );
        assert_eq!(
            plan(DEEPSEEK, "deepseek-chat", Thinking::switch(false)).unwrap(),
            ThinkingPlan::default()
        );
        refused(
            DEEPSEEK,
            "deepseek-chat",
            Thinking::switch(true),
            "thinking",
            "model `deepseek-chat` does not think; thinking cannot be turned on",
        );
        refused(
            DEEPSEEK,
            "deepseek-reasoner",
            Thinking::switch(false),
            "thinking",
            "always thinks; thinking cannot be turned off",
        );
        refused(
            DEEPSEEK,
            "deepseek-reasoner",
            Thinking::budget(10),
            "thinking_budget",
            "the model decides",
        );
    }

    #[test]
    fn issue_18_contradictions_are_invalid_before_any_provider() {
        let off_with_budget = Thinking {
            enabled: Some(false),
            budget_tokens: Some(5),
            effort: None,
        };
        assert_eq!(
            off_with_budget.validate().unwrap_err().param(),
            Some("thinking_budget")
        );
        let both = Thinking {
            budget_tokens: Some(5),
            effort: Some(ReasoningEffort::Low),
            ..Thinking::default()
        };
        assert_eq!(
            both.validate().unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        assert!(Thinking::budget(0).validate().is_err());
        assert_eq!(
            Thinking::from_effort_name("NONE"),
            Some(Thinking::switch(false))
        );
        assert_eq!(
            Thinking::from_effort_name("max"),
            Some(Thinking::switch(true))
        );
        assert_eq!(
            Thinking::from_effort_name("High"),
            Some(Thinking::effort(ReasoningEffort::High))
        );
        assert_eq!(Thinking::from_effort_name("extreme"), None);
    }
}
