//! Shared helpers for the agent tests: a client pointed at a provider's emulator, the two
//! typed tools of the scenarios, transcript shapes, and provider wrappers that change what
//! the emulated model does (always call a tool again; send tampered tool calls).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;

use ::http::HeaderMap;
use llmux_core::agent::{tool_fn, DynTool, JsonSchema, ToolError};
use llmux_core::codec::Frame;
use llmux_core::http::{HttpRequest, HttpResponse};
use llmux_core::providers::{
    AuthContext, BoxFuture, Capabilities, Framing, Provider, ProviderSettings, StreamParser,
};
use llmux_core::resilience::RetryPolicy;
use llmux_core::*;
use llmux_emulator::{Emulator, EmulatorConfig, Vendor};
use serde::Deserialize;

/// An emulator for provider `id` and a client configured from its conventional variables.
pub struct Subject {
    pub id: &'static str,
    pub emu: Emulator,
    pub client: Client,
    pub model: String,
}

impl Subject {
    pub async fn start(id: &'static str) -> Subject {
        let vendor = Vendor::for_provider(id).unwrap();
        let emu = Emulator::start(EmulatorConfig::new(vendor)).await.unwrap();
        let env: HashMap<String, String> = emu.env_for(id).unwrap().into_iter().collect();
        let spec = llmux_core::providers::spec(id).unwrap();
        let settings = ProviderSettings::from_lookup(spec, |k| env.get(k).cloned());
        let client = Client::builder()
            .without_env()
            .retry(RetryPolicy::none())
            .breaker(None)
            .provider(id, settings)
            .build()
            .unwrap();
        let model = vendor
            .default_models()
            .first()
            .cloned()
            .unwrap_or_else(|| spec.models.first().unwrap().to_string());
        Subject {
            id,
            emu,
            client,
            model,
        }
    }

    /// `provider/model`.
    pub fn addr(&self) -> String {
        format!("{}/{}", self.id, self.model)
    }

    /// Bodies of the chat requests the emulator received, as text.
    pub fn bodies(&self) -> Vec<String> {
        self.emu
            .requests()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }
}

/// Current weather for a city.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct GetWeather {
    /// The city, as the user wrote it.
    pub city: String,
}

/// Converts a temperature from Celsius.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ConvertTemperature {
    /// Degrees Celsius.
    pub celsius: f64,
    /// The unit to convert to.
    pub to: Unit,
}

/// A temperature unit.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Fahrenheit,
    Kelvin,
}

/// `get_weather`: "<city>: 18 °C, sunny".
pub fn weather() -> impl DynTool {
    tool_fn("get_weather", "", |a: GetWeather| async move {
        Ok::<_, ToolError>(format!("{}: 18 °C, sunny", a.city))
    })
}

/// `convert_temperature`: "<c> °C = <f> °F".
pub fn convert() -> impl DynTool {
    tool_fn(
        "convert_temperature",
        "",
        |a: ConvertTemperature| async move {
            Ok::<_, ToolError>(match a.to {
                Unit::Fahrenheit => format!("{} °C = {:.1} °F", a.celsius, a.celsius * 1.8 + 32.0),
                Unit::Kelvin => format!("{} °C = {:.2} K", a.celsius, a.celsius + 273.15),
            })
        },
    )
}

/// Each message's role and the names of the tools it calls.
pub fn shape(transcript: &[Message]) -> Vec<(Role, Vec<String>)> {
    transcript
        .iter()
        .map(|m| {
            (
                m.role,
                m.tool_calls.iter().map(|c| c.name.clone()).collect(),
            )
        })
        .collect()
}

pub fn shape_of(spec: &[(Role, &[&str])]) -> Vec<(Role, Vec<String>)> {
    spec.iter()
        .map(|(r, names)| (*r, names.iter().map(|n| (*n).to_owned()).collect()))
        .collect()
}

/// Every tool message answers a call of the assistant message before it.
pub fn assert_results_answer_calls(transcript: &[Message]) {
    let mut open: Vec<String> = Vec::new();
    for m in transcript {
        match m.role {
            Role::Assistant => open = m.tool_calls.iter().map(|c| c.id.clone()).collect(),
            Role::Tool => {
                let id = m.tool_call_id.clone().unwrap();
                assert_eq!(open.first(), Some(&id), "tool results out of call order");
                open.remove(0);
            }
            _ => assert!(open.is_empty(), "unanswered calls {open:?}"),
        }
    }
}

/// Delegates to a real provider, changing what goes out or comes back.
#[derive(Debug)]
pub struct Wrapped {
    pub inner: Arc<dyn Provider>,
    /// Appends a user message after trailing tool results, so the emulated model (which calls
    /// tools whenever the last message is the user's) keeps calling tools.
    pub nag: bool,
    /// Rewrites every tool call the model answers with.
    pub tamper: Option<fn(ToolCall) -> ToolCall>,
}

impl Wrapped {
    pub fn looping(inner: Arc<dyn Provider>) -> Arc<dyn Provider> {
        Arc::new(Wrapped {
            inner,
            nag: true,
            tamper: None,
        })
    }

    pub fn tampering(inner: Arc<dyn Provider>, f: fn(ToolCall) -> ToolCall) -> Arc<dyn Provider> {
        Arc::new(Wrapped {
            inner,
            nag: false,
            tamper: Some(f),
        })
    }
}

impl Provider for Wrapped {
    fn id(&self) -> &'static str {
        self.inner.id()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn base_url(&self) -> &str {
        self.inner.base_url()
    }
    fn build_chat(&self, model: &str, req: &ChatRequest, stream: bool) -> Result<HttpRequest> {
        if self.nag && req.messages.last().is_some_and(|m| m.role == Role::Tool) {
            let mut req = req.clone();
            req.messages.push(Message::user("Once more."));
            return self.inner.build_chat(model, &req, stream);
        }
        self.inner.build_chat(model, req, stream)
    }
    fn parse_chat(&self, resp: &HttpResponse) -> Result<ChatResponse> {
        let mut out = self.inner.parse_chat(resp)?;
        if let Some(f) = self.tamper {
            for c in &mut out.choices {
                c.message.tool_calls = c.message.tool_calls.drain(..).map(f).collect();
            }
        }
        Ok(out)
    }
    fn framing(&self) -> Framing {
        self.inner.framing()
    }
    fn authorize<'a>(
        &'a self,
        req: HttpRequest,
        ctx: &'a AuthContext,
    ) -> BoxFuture<'a, Result<HttpRequest>> {
        self.inner.authorize(req, ctx)
    }
    fn stream_parser(&self, model: &str, req: &ChatRequest) -> Box<dyn StreamParser> {
        Box::new(TamperParser {
            inner: self.inner.stream_parser(model, req),
            tamper: self.tamper,
        })
    }
    fn classify_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        self.inner.classify_error(status, headers, body)
    }
}

struct TamperParser {
    inner: Box<dyn StreamParser>,
    tamper: Option<fn(ToolCall) -> ToolCall>,
}

impl TamperParser {
    /// The first fragment of a call (it has the name) carries the whole tampered call; the
    /// later fragments carry nothing.
    fn rewrite(&self, events: &mut [StreamEvent]) {
        let Some(f) = self.tamper else { return };
        for ev in events {
            if let StreamEvent::ToolCallDelta {
                id,
                name,
                arguments,
                ..
            } = ev
            {
                match name {
                    Some(n) => {
                        let call = f(ToolCall {
                            id: id.clone().unwrap_or_default(),
                            name: n.clone(),
                            arguments: String::new(),
                        });
                        *id = Some(call.id);
                        *n = call.name;
                        *arguments = call.arguments;
                    }
                    None => arguments.clear(),
                }
            }
        }
    }
}

impl StreamParser for TamperParser {
    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<StreamEvent>) -> Result<()> {
        let from = out.len();
        self.inner.on_frame(frame, out)?;
        self.rewrite(&mut out[from..]);
        Ok(())
    }
    fn is_done(&self) -> bool {
        self.inner.is_done()
    }
    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<()> {
        let from = out.len();
        self.inner.finish(out)?;
        self.rewrite(&mut out[from..]);
        Ok(())
    }
}
