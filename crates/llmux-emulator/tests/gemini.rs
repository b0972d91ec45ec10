//! The Gemini emulator: generateContent and its SSE stream, function calling, thinking, countTokens,
//! embeddings, auth by header or `?key=`, faults in Google's error envelope, and the official `google-genai`
//! Python SDK driving it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod python_sdk;

use common::{send, Resp};
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::{json, Value};

const KEY: &str = "gemini-emulator-key";

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::Gemini))
        .await
        .unwrap()
}

async fn call(emu: &Emulator, path: &str, body: &Value) -> Resp {
    let url = format!("{}{path}", emu.base_url());
    send(
        "POST",
        &url,
        &[
            ("x-goog-api-key", KEY),
            ("content-type", "application/json"),
        ],
        &body.to_string(),
    )
    .await
}

fn hello() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]})
}

fn weather() -> Value {
    json!([{"functionDeclarations": [{"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}])
}

/// The JSON chunks of a Gemini SSE stream (`data: …` separated by CRLF CRLF).
fn chunks(body: &str) -> Vec<Value> {
    assert!(body.ends_with("\r\n\r\n"), "{body:?}");
    body.split("\r\n\r\n")
        .filter(|c| !c.is_empty())
        .map(|c| serde_json::from_str(c.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn base_url_env_and_defaults() {
    let emu = emulator().await;
    assert_eq!(Vendor::Gemini.id(), "gemini");
    assert_eq!(Vendor::for_provider("gemini"), Some(Vendor::Gemini));
    assert_eq!(emu.base_url(), format!("http://{}", emu.addr()));
    let env = emu.env_for("gemini").unwrap();
    assert!(env.contains(&("GEMINI_BASE_URL".to_owned(), emu.base_url())));
    assert!(env.contains(&("GEMINI_API_KEY".to_owned(), KEY.to_owned())));
}

#[tokio::test]
async fn generate_content_answers_with_usage_under_every_api_version() {
    let emu = emulator().await;
    let mut body = hello();
    body["systemInstruction"] = json!({"parts": [{"text": "You are terse."}]});
    for version in ["v1beta", "v1"] {
        let r = call(
            &emu,
            &format!("/{version}/models/gemini-2.5-flash:generateContent"),
            &body,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let c = &v["candidates"][0];
        assert_eq!(
            c["content"],
            json!({"parts": [{"text": "You said: hi there"}], "role": "model"})
        );
        assert_eq!(c["finishReason"], "STOP");
        assert_eq!(c["index"], 0);
        let u = &v["usageMetadata"];
        // system 7 + "hi there" 6; reply 4 pieces.
        assert_eq!(u["promptTokenCount"], 13);
        assert_eq!(u["candidatesTokenCount"], 4);
        assert_eq!(u["totalTokenCount"], 17);
        assert!(u.get("thoughtsTokenCount").is_none());
        assert_eq!(v["modelVersion"], "gemini-2.5-flash");
        assert!(v["responseId"].is_string());
    }
}

#[tokio::test]
async fn key_in_the_query_works_and_bad_keys_get_google_errors() {
    let emu = emulator().await;
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    let url = |q: &str| format!("{}{path}{q}", emu.base_url());
    let body = hello().to_string();
    let r = send("POST", &url(&format!("?key={KEY}")), &[], &body).await;
    assert_eq!(r.status, 200);
    let r = send("POST", &url("?key=wrong"), &[], &body).await;
    assert_eq!(r.status, 400);
    let e = &r.json()["error"];
    assert_eq!(
        (e["code"].clone(), e["status"].clone()),
        (json!(400), json!("INVALID_ARGUMENT"))
    );
    assert_eq!(e["details"][0]["reason"], "API_KEY_INVALID");
    let r = send("POST", &url(""), &[], &body).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["status"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn stream_sends_whole_responses_with_cumulative_usage() {
    let emu = emulator().await;
    let r = call(
        &emu,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &hello(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/event-stream");
    let cs = chunks(r.text());
    assert_eq!(cs.len(), 4);
    let text: String = cs
        .iter()
        .map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(text, "You said: hi there");
    let counts: Vec<u64> = cs
        .iter()
        .map(|c| c["usageMetadata"]["candidatesTokenCount"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [1, 2, 3, 4]);
    assert!(cs[..3]
        .iter()
        .all(|c| c["candidates"][0].get("finishReason").is_none()));
    assert_eq!(cs[3]["candidates"][0]["finishReason"], "STOP");
}

#[tokio::test]
async fn function_calls_and_responses_round_trip() {
    let emu = emulator().await;
    let mut body =
        json!({"contents": [{"role": "user", "parts": [{"text": "Paris"}]}], "tools": weather()});
    let v = call(&emu, "/v1beta/models/m:generateContent", &body)
        .await
        .json();
    let part = &v["candidates"][0]["content"]["parts"][0];
    assert_eq!(
        part["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Paris"}})
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    body["contents"].as_array_mut().unwrap().extend([
        v["candidates"][0]["content"].clone(),
        json!({"role": "user", "parts": [{"functionResponse":
                     {"name": "get_weather", "response": {"result": "sunny"}}}]}),
    ]);
    let v = call(&emu, "/v1beta/models/m:generateContent", &body)
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        r#"Tool results: {"result":"sunny"}"#
    );
    // NONE turns tools off; a function response needs a function call right before it.
    let mut none = json!({"contents": [{"role": "user", "parts": [{"text": "Paris"}]}], "tools": weather(),
                          "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}});
    let v = call(&emu, "/v1beta/models/m:generateContent", &none)
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "You said: Paris"
    );
    none["contents"] = json!([{"role": "user", "parts": [{"functionResponse":
        {"name": "get_weather", "response": {}}}]}]);
    let r = call(&emu, "/v1beta/models/m:generateContent", &none).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("function response turn comes immediately after a function call turn"));
}

#[tokio::test]
async fn thoughts_are_counted_and_shown_only_when_asked() {
    let emu = emulator().await;
    let mut body = hello();
    body["generationConfig"] = json!({"thinkingConfig": {"thinkingBudget": 1024}});
    let v = call(&emu, "/v1beta/models/m:generateContent", &body)
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // "Considering: hi there" = 3 pieces.
    assert_eq!(v["usageMetadata"]["thoughtsTokenCount"], 3);
    assert_eq!(v["usageMetadata"]["totalTokenCount"], 6 + 4 + 3);
    body["generationConfig"]["thinkingConfig"]["includeThoughts"] = json!(true);
    let v = call(&emu, "/v1beta/models/m:generateContent", &body)
        .await
        .json();
    let parts = &v["candidates"][0]["content"]["parts"];
    assert_eq!(
        parts[0],
        json!({"text": "Considering: hi there", "thought": true})
    );
    assert_eq!(parts[1], json!({"text": "You said: hi there"}));
    body["generationConfig"]["thinkingConfig"]["thinkingBudget"] = json!(0);
    let v = call(&emu, "/v1beta/models/m:generateContent", &body)
        .await
        .json();
    assert!(v["usageMetadata"].get("thoughtsTokenCount").is_none());
}

#[tokio::test]
async fn generation_config_shapes_the_reply() {
    let emu = emulator().await;
    let mut body = hello();
    body["generationConfig"] = json!({"maxOutputTokens": 2});
    let v = call(&emu, "/v1beta/models/m:generateContent", &body)
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "You said: "
    );
    assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
    body["generationConfig"] = json!({"stopSequences": ["there"]});
    let v = call(&emu, "/v1beta/models/m:generateContent", &body)
        .await
        .json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "You said: hi "
    );
    body["generationConfig"] = json!({"responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}, "q": {"type": "STRING"}}}});
    let v = call(&emu, "/v1beta/models/m:generateContent", &body)
        .await
        .json();
    let text = v["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"n": 1, "q": "hi there"})
    );
    body["cachedContent"] = json!("cachedContents/abc");
    body["generationConfig"] = json!({});
    let v = call(&emu, "/v1beta/models/m:generateContent", &body)
        .await
        .json();
    assert_eq!(v["usageMetadata"]["cachedContentTokenCount"], 3);
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 6);
}

#[tokio::test]
async fn invalid_requests_are_invalid_argument() {
    let emu = emulator().await;
    let bad = |body: Value| {
        let emu = &emu;
        async move {
            let r = call(emu, "/v1beta/models/m:generateContent", &body).await;
            assert_eq!(r.status, 400, "{body}: {}", r.text());
            assert_eq!(r.json()["error"]["status"], "INVALID_ARGUMENT");
            r.json()["error"]["message"].as_str().unwrap().to_owned()
        }
    };
    assert!(bad(json!({})).await.contains("contents is not specified"));
    assert!(
        bad(json!({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}))
            .await
            .contains("valid role")
    );
    assert!(bad(json!({"contents": [{"role": "user", "parts": []}]}))
        .await
        .contains("parts"));
    assert!(bad(
        json!({"contents": [{"role": "user", "parts": [{"text": "a", "inlineData": {}}]}]})
    )
    .await
    .contains("oneof"));
    let mut t = hello();
    t["generationConfig"] = json!({"temperature": 3});
    assert!(bad(t).await.contains("temperature"));
    let mut t = hello();
    t["tools"] = json!([{"functionDeclarations": [{"name": "9bad"}]}]);
    assert!(bad(t).await.contains("Invalid function name"));
    let mut t = hello();
    t["tools"] = weather();
    t["toolConfig"] =
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["nope"]}});
    assert!(bad(t).await.contains("nope"));
    let r = call(&emu, "/v1beta/models/m:unknownMethod", &hello()).await;
    assert_eq!(
        (r.status, r.json()["error"]["status"].clone()),
        (404, json!("NOT_FOUND"))
    );
}

#[tokio::test]
async fn count_tokens_embeddings_and_models() {
    let emu = emulator().await;
    let r = call(
        &emu,
        "/v1beta/models/gemini-2.5-flash:countTokens",
        &hello(),
    )
    .await;
    assert_eq!(r.json()["totalTokens"], 6);
    let wrapped = json!({"generateContentRequest": {"model": "models/gemini-2.5-flash",
        "contents": hello()["contents"], "systemInstruction": {"parts": [{"text": "You are terse."}]}}});
    let r = call(
        &emu,
        "/v1beta/models/gemini-2.5-flash:countTokens",
        &wrapped,
    )
    .await;
    assert_eq!(r.json()["totalTokens"], 13);

    let one = json!({"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 16});
    let v = call(
        &emu,
        "/v1beta/models/gemini-embedding-001:embedContent",
        &one,
    )
    .await
    .json();
    let values = v["embedding"]["values"].as_array().unwrap();
    assert_eq!(values.len(), 16);
    let batch = json!({"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 16},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "world"}]}}]});
    let v = call(
        &emu,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        &batch,
    )
    .await
    .json();
    let e = v["embeddings"].as_array().unwrap();
    assert_eq!(
        e[0]["values"].as_array().unwrap(),
        values,
        "same text, same vector"
    );
    assert_eq!(e[1]["values"].as_array().unwrap().len(), 3072);
    let mut wrong = batch.clone();
    wrong["requests"][1]["model"] = json!("models/other");
    let r = call(
        &emu,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        &wrong,
    )
    .await;
    assert_eq!(r.status, 400);

    let list = send(
        "GET",
        &format!("{}/v1beta/models", emu.base_url()),
        &[("x-goog-api-key", KEY)],
        "",
    )
    .await;
    assert_eq!(list.json()["models"][0]["name"], "models/gemini-2.5-flash");
    let one = send(
        "GET",
        &format!("{}/v1/models/gemini-2.5-pro", emu.base_url()),
        &[("x-goog-api-key", KEY)],
        "",
    )
    .await;
    assert_eq!(one.json()["name"], "models/gemini-2.5-pro");
    let none = send(
        "GET",
        &format!("{}/v1beta/models/nope", emu.base_url()),
        &[("x-goog-api-key", KEY)],
        "",
    )
    .await;
    assert_eq!(none.status, 404);
}

#[tokio::test]
async fn faults_answer_in_googles_envelope() {
    let emu = emulator().await;
    let path = "/v1beta/models/m:generateContent";
    for (status, name) in [
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (401, "UNAUTHENTICATED"),
    ] {
        emu.push_fault(Fault::once(FaultKind::Status {
            status,
            body: None,
            retry_after: None,
        }));
        let r = call(&emu, path, &hello()).await;
        assert_eq!(r.status, status);
        assert_eq!(r.json()["error"]["code"], status);
        assert_eq!(r.json()["error"]["status"], name);
    }
    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let r = call(&emu, path, &hello()).await;
    assert_eq!(
        (r.status, r.json()["error"]["status"].clone()),
        (429, json!("RESOURCE_EXHAUSTED"))
    );
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 0 }));
    let r = call(&emu, path, &hello()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["promptFeedback"]["blockReason"], "SAFETY");
    assert!(r.json().get("candidates").is_none());
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 2 }));
    let r = call(
        &emu,
        "/v1beta/models/m:streamGenerateContent?alt=sse",
        &hello(),
    )
    .await;
    let cs = chunks(r.text());
    assert_eq!(cs.len(), 3);
    assert_eq!(cs[2]["error"]["status"], "INTERNAL");
    emu.push_fault(Fault::once(FaultKind::ErrorBody200));
    let r = call(&emu, path, &hello()).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (200, json!(500))
    );
}

#[tokio::test]
async fn the_official_sdk_drives_the_emulator() {
    let emu = emulator().await;
    let cases = [
        "generate",
        "generate_stream",
        "function_call",
        "stream_function_call",
        "thinking",
        "json_mode",
        "embed",
        "count_tokens",
        "models",
        "auth_error",
        "invalid_request",
    ];
    let Some(res) = python_sdk::run("gemini_cases.py", &cases, &emu.base_url(), KEY).await else {
        return;
    };
    let g = res.get("generate");
    assert_eq!(g["text"], "You said: hi there");
    assert_eq!(g["finish_reason"], "STOP");
    assert_eq!(g["role"], "model");
    assert_eq!(g["usage"]["prompt_token_count"], 13);
    assert_eq!(g["usage"]["candidates_token_count"], 4);
    assert_eq!(g["usage"]["total_token_count"], 17);
    assert_eq!(g["model_version"], "gemini-2.5-flash");

    let s = res.get("generate_stream");
    assert_eq!(s["text"], "You said: stream me ");
    assert_eq!(s["finish_reasons"], json!(["STOP"]));
    assert_eq!(s["last_usage"]["candidates_token_count"], 4);

    let f = res.get("function_call");
    assert_eq!(
        f["calls"],
        json!([{"name": "get_weather", "args": {"city": "Paris", "unit": "c"}, "id": null}])
    );
    assert_eq!(f["second_text"], r#"Tool results: {"result":"sunny"}"#);
    let sf = res.get("stream_function_call");
    assert_eq!(sf["calls"][0]["name"], "get_weather");

    let t = res.get("thinking");
    assert_eq!(
        t["parts"][0],
        json!({"text": "Considering: think about this", "thought": true})
    );
    assert_eq!(t["text"], "You said: think about this");
    // "Considering: think about this" = 4 pieces.
    assert_eq!(t["usage"]["thoughts_token_count"], 4);

    assert_eq!(res.get("json_mode")["parsed"], json!({"city": "Paris"}));
    let e = res.get("embed");
    assert_eq!(
        (e["n"].clone(), e["dims"].clone()),
        (json!(2), json!([8, 8]))
    );
    assert!((e["norm"].as_f64().unwrap() - 1.0).abs() < 1e-3);
    assert_eq!(e["different"], true);
    assert_eq!(res.get("count_tokens")["total_tokens"], 6);
    assert!(res.get("models")["names"]
        .as_array()
        .unwrap()
        .contains(&json!("models/gemini-2.5-flash")));

    let auth = res.get("auth_error");
    assert_eq!(auth["raised"], "ClientError");
    assert_eq!(
        (auth["code"].clone(), auth["status"].clone()),
        (json!(400), json!("INVALID_ARGUMENT"))
    );
    let invalid = res.get("invalid_request");
    assert_eq!(
        (invalid["raised"].clone(), invalid["code"].clone()),
        (json!("ClientError"), json!(400))
    );

    // What the SDK sent: the key in x-goog-api-key (never in the URL), camelCase bodies, both API versions.
    let reqs = emu.requests();
    assert!(reqs
        .iter()
        .all(|r| r.query.as_deref().is_none_or(|q| !q.contains("key="))));
    assert!(reqs.iter().any(|r| r.path.starts_with("/v1beta/")));
    assert!(reqs.iter().any(|r| r.path.starts_with("/v1/")));
    let batch = reqs
        .iter()
        .find(|r| r.path.ends_with(":batchEmbedContents"))
        .unwrap();
    assert_eq!(
        batch.json().unwrap()["requests"][0]["outputDimensionality"],
        8
    );
    // The SDK sends nested config objects in snake_case, which the API (and so the emulator) also reads.
    let thinking = reqs
        .iter()
        .find(|r| r.body.windows(14).any(|w| w == b"thinkingConfig"))
        .unwrap();
    assert_eq!(
        thinking.json().unwrap()["generationConfig"]["thinkingConfig"],
        json!({"include_thoughts": true, "thinking_budget": 1024})
    );
}
