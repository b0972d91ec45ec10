//! Issue 18, part 3: thinking settings through the gateway. `reasoning_effort`, the native
//! `thinking` object and `thinking_budget`, each alone on the OpenAI ingress, reach every
//! upstream in its own fields, or are refused with a 400 naming the field and nothing sent:
//! asserted on the emulators' request logs, one case per (field, upstream) pair.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use llmux_emulator::{Emulator, Vendor};
use serde_json::{json, Value};

/// Every field an upstream could take a thinking setting in (JSON pointers into its body).
const THINKING_FIELDS: [&str; 9] = [
    "/enable_thinking",
    "/thinking_budget",
    "/reasoning_effort",
    "/chat_template_kwargs",
    "/thinking",
    "/EnableThinking",
    "/parameters/enable_thinking",
    "/parameters/thinking_budget",
    "/think",
];

struct Upstreams {
    gw: Harness,
    openai: Emulator,
    dashscope: Emulator,
    hunyuan: Emulator,
    zhipu: Emulator,
}

/// One model per upstream: DashScope native (`qwen-plus`) and compatible mode (`qwen-max`),
/// Hunyuan's signed native API, Zhipu, and on the OpenAI emulator OpenAI itself (`o4-mini`),
/// a vLLM server (`Qwen/Qwen3-8B`) and DeepSeek (`deepseek-reasoner`, `deepseek-chat`).
async fn upstreams() -> Upstreams {
    let openai = emulator(Vendor::OpenAi).await;
    let dashscope = emulator(Vendor::DashScope).await;
    let hunyuan = emulator(Vendor::Hunyuan).await;
    let zhipu = emulator(Vendor::Zhipu).await;
    let env: std::collections::HashMap<String, String> =
        hunyuan.env_for("hunyuan").unwrap().into_iter().collect();
    let hy = format!(
        "[[channels]]\nname = \"hy\"\nprovider = \"hunyuan\"\nbase_url = \"{}\"\n\
         secret_id = \"{}\"\nsecret_key = \"{}\"\nmodels = [\"hunyuan-t1-latest\"]\n",
        env["HUNYUAN_BASE_URL"], env["TENCENTCLOUD_SECRET_ID"], env["TENCENTCLOUD_SECRET_KEY"]
    );
    let gw = start(&format!(
        "{}{}{}{}{}{}{}{hy}",
        channel("ds", "dashscope", &dashscope, "[\"qwen-plus\"]", ""),
        channel("dsc", "dashscope-compat", &dashscope, "[\"qwen-max\"]", ""),
        channel("zp", "zhipu", &zhipu, "[\"glm-4.5\"]", ""),
        channel("oa", "openai", &openai, "[\"o4-mini\"]", ""),
        channel("vl", "vllm", &openai, "[\"Qwen/Qwen3-8B\"]", ""),
        channel("dk", "deepseek", &openai, "[\"deepseek-reasoner\"]", ""),
        channel("dkc", "deepseek", &openai, "[\"deepseek-chat\"]", ""),
    ))
    .await;
    Upstreams {
        gw,
        openai,
        dashscope,
        hunyuan,
        zhipu,
    }
}

impl Upstreams {
    fn emulator_of(&self, model: &str) -> &Emulator {
        match model {
            "qwen-plus" | "qwen-max" => &self.dashscope,
            "hunyuan-t1-latest" => &self.hunyuan,
            "glm-4.5" => &self.zhipu,
            _ => &self.openai,
        }
    }

    fn clear(&self) {
        for e in [&self.openai, &self.dashscope, &self.hunyuan, &self.zhipu] {
            e.clear_requests();
        }
    }
}

/// What one field should become upstream.
enum Expect {
    /// Sent: these thinking fields (pointer, value), and no other.
    Native(Vec<(&'static str, Value)>),
    /// Refused with a 400 whose `param` is this field; nothing sent.
    Refused(&'static str),
}

async fn check(u: &Upstreams, model: &str, field: Value, expect: Expect) {
    u.clear();
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in field.as_object().unwrap() {
        body[k] = v.clone();
    }
    let resp =
        u.gw.post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap();
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.unwrap();
    let emu = u.emulator_of(model);
    let case = format!("{model} with {field}");
    match expect {
        Expect::Native(fields) => {
            assert_eq!(status, 200, "{case}: {answer}");
            let log = emu.requests();
            assert_eq!(log.len(), 1, "{case}");
            let sent = log[0].json().unwrap();
            for p in THINKING_FIELDS {
                let want = fields.iter().find(|(q, _)| *q == p).map(|(_, v)| v);
                assert_eq!(sent.pointer(p), want, "{case}: {p} in {sent}");
            }
        }
        Expect::Refused(param) => {
            assert_eq!(status, 400, "{case}: {answer}");
            let err = &answer["error"];
            assert_eq!(err["param"], param, "{case}: {answer}");
            let msg = err["message"].as_str().unwrap();
            assert!(msg.contains(&format!("`{param}`")), "{case}: {msg}");
            assert!(
                msg.contains("not supported") || msg.contains("cannot be turned"),
                "{case}: {msg}"
            );
            assert!(emu.requests().is_empty(), "{case}: nothing is sent");
        }
    }
}

fn effort() -> Value {
    json!({"reasoning_effort": "high"})
}

fn thinking_object() -> Value {
    json!({"thinking": {"type": "enabled"}})
}

fn budget() -> Value {
    json!({"thinking_budget": 2048})
}

#[tokio::test]
async fn issue_18_reasoning_effort_reaches_each_upstream_natively_or_is_refused() {
    let u = upstreams().await;
    use Expect::*;
    // DashScope takes budgets, not levels: the effort's documented budget (high: 24,576).
    check(
        &u,
        "qwen-plus",
        effort(),
        Native(vec![
            ("/parameters/enable_thinking", Value::Bool(true)),
            ("/parameters/thinking_budget", json_u(24_576)),
        ]),
    )
    .await;
    check(
        &u,
        "qwen-max",
        effort(),
        Native(vec![
            ("/enable_thinking", Value::Bool(true)),
            ("/thinking_budget", json_u(24_576)),
        ]),
    )
    .await;
    check(
        &u,
        "hunyuan-t1-latest",
        effort(),
        Refused("reasoning_effort"),
    )
    .await;
    check(&u, "glm-4.5", effort(), Refused("reasoning_effort")).await;
    check(
        &u,
        "o4-mini",
        effort(),
        Native(vec![("/reasoning_effort", json_s("high"))]),
    )
    .await;
    // vLLM: the level, and the template's switch on (an effort asks for thinking).
    check(
        &u,
        "Qwen/Qwen3-8B",
        effort(),
        Native(vec![
            ("/reasoning_effort", json_s("high")),
            ("/chat_template_kwargs", json!({"enable_thinking": true})),
        ]),
    )
    .await;
    check(
        &u,
        "deepseek-reasoner",
        effort(),
        Refused("reasoning_effort"),
    )
    .await;
    // `none` turns thinking off: OpenAI's own value, DashScope's switch.
    check(
        &u,
        "o4-mini",
        json!({"reasoning_effort": "none"}),
        Native(vec![("/reasoning_effort", json_s("none"))]),
    )
    .await;
    check(
        &u,
        "qwen-plus",
        json!({"reasoning_effort": "none"}),
        Native(vec![("/parameters/enable_thinking", Value::Bool(false))]),
    )
    .await;
}

#[tokio::test]
async fn issue_18_the_thinking_object_reaches_each_upstream_natively_or_is_refused() {
    let u = upstreams().await;
    use Expect::*;
    check(
        &u,
        "qwen-plus",
        thinking_object(),
        Native(vec![("/parameters/enable_thinking", Value::Bool(true))]),
    )
    .await;
    check(
        &u,
        "qwen-max",
        thinking_object(),
        Native(vec![("/enable_thinking", Value::Bool(true))]),
    )
    .await;
    check(
        &u,
        "hunyuan-t1-latest",
        thinking_object(),
        Native(vec![("/EnableThinking", Value::Bool(true))]),
    )
    .await;
    check(
        &u,
        "glm-4.5",
        thinking_object(),
        Native(vec![("/thinking", json!({"type": "enabled"}))]),
    )
    .await;
    check(&u, "o4-mini", thinking_object(), Refused("thinking")).await;
    check(
        &u,
        "Qwen/Qwen3-8B",
        thinking_object(),
        Native(vec![(
            "/chat_template_kwargs",
            json!({"enable_thinking": true}),
        )]),
    )
    .await;
    // DeepSeek thinks by model: the reasoner honours it (nothing to send), the chat model cannot.
    check(&u, "deepseek-reasoner", thinking_object(), Native(vec![])).await;
    check(&u, "deepseek-chat", thinking_object(), Refused("thinking")).await;
    // Off, with a budget in the object: DashScope gets both settings.
    check(
        &u,
        "glm-4.5",
        json!({"thinking": {"type": "disabled"}}),
        Native(vec![("/thinking", json!({"type": "disabled"}))]),
    )
    .await;
    check(
        &u,
        "qwen-plus",
        json!({"thinking": {"type": "enabled", "budget_tokens": 500}}),
        Native(vec![
            ("/parameters/enable_thinking", Value::Bool(true)),
            ("/parameters/thinking_budget", json_u(500)),
        ]),
    )
    .await;
}

#[tokio::test]
async fn issue_18_a_thinking_budget_alone_reaches_each_upstream_natively_or_is_refused() {
    let u = upstreams().await;
    use Expect::*;
    // A budget alone turns thinking on where the switch is separate (it was dropped before).
    check(
        &u,
        "qwen-plus",
        budget(),
        Native(vec![
            ("/parameters/enable_thinking", Value::Bool(true)),
            ("/parameters/thinking_budget", json_u(2048)),
        ]),
    )
    .await;
    check(
        &u,
        "qwen-max",
        budget(),
        Native(vec![
            ("/enable_thinking", Value::Bool(true)),
            ("/thinking_budget", json_u(2048)),
        ]),
    )
    .await;
    check(
        &u,
        "hunyuan-t1-latest",
        budget(),
        Refused("thinking_budget"),
    )
    .await;
    check(&u, "glm-4.5", budget(), Refused("thinking_budget")).await;
    check(&u, "o4-mini", budget(), Refused("thinking_budget")).await;
    check(&u, "Qwen/Qwen3-8B", budget(), Refused("thinking_budget")).await;
    check(
        &u,
        "deepseek-reasoner",
        budget(),
        Refused("thinking_budget"),
    )
    .await;
}

#[tokio::test]
async fn issue_18_contradicting_thinking_fields_are_a_400_naming_them() {
    let u = upstreams().await;
    for (field, param) in [
        (
            json!({"enable_thinking": false, "thinking": {"type": "enabled"}}),
            "thinking.type",
        ),
        (
            json!({"thinking_budget": 10, "thinking": {"type": "enabled", "budget_tokens": 20}}),
            "thinking.budget_tokens",
        ),
        (
            json!({"reasoning_effort": "none", "thinking_budget": 10}),
            "thinking_budget",
        ),
        (
            json!({"reasoning_effort": "low", "thinking_budget": 10}),
            "reasoning_effort",
        ),
        (json!({"reasoning_effort": "extreme"}), "reasoning_effort"),
        (json!({"thinking": {"type": "sometimes"}}), "thinking.type"),
    ] {
        u.clear();
        let mut body =
            json!({"model": "qwen-plus", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in field.as_object().unwrap() {
            body[k] = v.clone();
        }
        let resp =
            u.gw.post("/v1/chat/completions")
                .json(&body)
                .send()
                .await
                .unwrap();
        assert_eq!(resp.status(), 400, "{field}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["error"]["param"], param, "{field}: {answer}");
        assert!(u.dashscope.requests().is_empty());
    }
}

#[tokio::test]
async fn issue_18_other_ingresses_carry_their_thinking_fields_too() {
    let u = upstreams().await;
    // Responses `reasoning.effort` → OpenAI's `reasoning_effort`.
    u.clear();
    let resp =
        u.gw.post("/v1/responses")
            .json(&json!({"model": "o4-mini", "input": "hi", "reasoning": {"effort": "low"}}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        u.openai.requests()[0].json().unwrap()["reasoning_effort"],
        "low"
    );
    // Anthropic `thinking` with a budget → DashScope's fields.
    u.clear();
    let resp =
        u.gw.post("/v1/messages")
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": "qwen-plus", "max_tokens": 4000,
            "thinking": {"type": "enabled", "budget_tokens": 1500},
            "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = u.dashscope.requests()[0].json().unwrap();
    assert_eq!(sent["parameters"]["enable_thinking"], true);
    assert_eq!(sent["parameters"]["thinking_budget"], 1500);
    // Gemini `thinkingLevel` → Zhipu cannot take a level: the Gemini envelope's 400.
    u.clear();
    let resp =
        u.gw.post("/v1beta/models/glm-4.5:generateContent")
            .json(&json!({"contents": [{"parts": [{"text": "hi"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingLevel": "LOW"}}}))
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 400);
    let answer: Value = resp.json().await.unwrap();
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`reasoning_effort`"),
        "{answer}"
    );
    assert!(u.zhipu.requests().is_empty());
}

fn json_u(n: u64) -> Value {
    Value::from(n)
}

fn json_s(s: &str) -> Value {
    Value::from(s)
}
