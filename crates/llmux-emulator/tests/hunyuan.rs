//! Hunyuan: TC3 verification (SDK vectors replayed, skew, unknown ids, tampering), native chat and stream shapes,
//! faults, and the OpenAI-compatible endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{frames, send, Resp};
use hmac::{KeyInit as _, Mac as _};
use llmux_emulator::{
    Emulator, EmulatorConfig, Fault, FaultKind, Vendor, HUNYUAN_SECRET_ID, HUNYUAN_SECRET_KEY,
};
use serde_json::{json, Value};
use sha2::Digest as _;

fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(msg.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn sha_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// UTC date of a Unix timestamp (days → civil date).
fn utc_date(ts: i64) -> String {
    let z = ts.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Signs a POST the way the official SDK does (content-type;host).
fn authorization(id: &str, key: &str, host: &str, ts: i64, body: &str) -> String {
    let date = utc_date(ts);
    let canonical = format!(
        "POST\n/\n\ncontent-type:application/json\nhost:{host}\n\ncontent-type;host\n{}",
        sha_hex(body)
    );
    let scope = format!("{date}/hunyuan/tc3_request");
    let sts = format!("TC3-HMAC-SHA256\n{ts}\n{scope}\n{}", sha_hex(&canonical));
    let k = hmac(format!("TC3{key}").as_bytes(), &date);
    let k = hmac(&k, "hunyuan");
    let k = hmac(&k, "tc3_request");
    let sig = hex::encode(hmac(&k, &sts));
    format!(
        "TC3-HMAC-SHA256 Credential={id}/{scope}, SignedHeaders=content-type;host, Signature={sig}"
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn hunyuan() -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::Hunyuan))
        .await
        .unwrap()
}

/// A signed native call with the default credentials at time `ts`.
async fn call_at(emu: &Emulator, body: &Value, ts: i64) -> Resp {
    let body = body.to_string();
    let host = emu.addr().to_string();
    let auth = authorization(HUNYUAN_SECRET_ID, HUNYUAN_SECRET_KEY, &host, ts, &body);
    let ts = ts.to_string();
    send(
        "POST",
        &emu.base_url(),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("x-tc-action", "ChatCompletions"),
            ("x-tc-version", "2023-09-01"),
            ("x-tc-timestamp", &ts),
            ("x-tc-region", "ap-guangzhou"),
        ],
        &body,
    )
    .await
}

async fn call(emu: &Emulator, body: &Value) -> Resp {
    call_at(emu, body, now()).await
}

fn hello() -> Value {
    json!({"Model": "hunyuan-lite", "Messages": [{"Role": "user", "Content": "Hello there"}]})
}

fn error_code(r: &Resp) -> String {
    assert_eq!(r.status, 200, "Hunyuan errors are HTTP 200: {:?}", r.body);
    r.json()["Response"]["Error"]["Code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {:?}", r.body))
        .to_owned()
}

#[tokio::test]
async fn defaults_and_urls() {
    let emu = hunyuan().await;
    assert_eq!(Vendor::Hunyuan.id(), "hunyuan");
    assert_eq!(emu.base_url(), format!("http://{}/", emu.addr()));
    assert_eq!(
        emu.compat_base_url().unwrap(),
        format!("http://{}/v1", emu.addr())
    );
    let cfg = EmulatorConfig::new(Vendor::Hunyuan).with_credential("secret_key", "top-secret-1");
    let dbg = format!("{cfg:?}");
    assert!(
        !dbg.contains("top-secret-1") && !dbg.contains(HUNYUAN_SECRET_KEY),
        "{dbg}"
    );
}

#[tokio::test]
async fn replays_every_sdk_signed_vector() {
    let doc: Value = serde_json::from_str(include_str!("../fixtures/hunyuan/tc3.json")).unwrap();
    for v in doc["vectors"].as_array().unwrap() {
        let (i, e) = (&v["inputs"], &v["expected"]);
        if i["service"] != "hunyuan" {
            continue;
        }
        let mut cfg = EmulatorConfig::new(Vendor::Hunyuan)
            .with_credential("secret_id", i["secret_id"].as_str().unwrap())
            .with_credential("secret_key", i["secret_key"].as_str().unwrap());
        if let Some(t) = i["token"].as_str() {
            cfg = cfg.with_credential("token", t);
        }
        let emu = Emulator::start(cfg).await.unwrap();
        // Freeze the emulator's clock near the vector's timestamp.
        let ts = i["timestamp"].as_i64().unwrap();
        emu.set_clock_offset_ms((ts - now()) * 1000);
        let headers: Vec<(String, String)> = e["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        let hs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = e["request_body"].as_str().unwrap();
        let r = send("POST", &emu.base_url(), &hs, body).await;
        let name = v["name"].as_str().unwrap();
        assert_eq!(r.status, 200, "{name}");
        let text = r.text();
        assert!(!text.contains("\"Error\""), "{name}: {text}");
        if i["params"]["Stream"] == true {
            assert!(r.content_type.starts_with("text/event-stream"), "{name}");
        } else {
            assert_eq!(
                r.json()["Response"]["Choices"][0]["Message"]["Role"],
                "assistant"
            );
        }
        // Without the token, the temporary-credential request fails.
        if i["token"].is_string() {
            let hs: Vec<(&str, &str)> = hs
                .iter()
                .copied()
                .filter(|(k, _)| *k != "X-TC-Token")
                .collect();
            let r = send("POST", &emu.base_url(), &hs, body).await;
            assert_eq!(error_code(&r), "AuthFailure.TokenFailure");
        }
    }
}

#[tokio::test]
async fn rejects_unknown_ids_bad_signatures_and_skew() {
    let emu = hunyuan().await;
    let body = hello().to_string();
    let host = emu.addr().to_string();
    let ts = now();
    let headers = |auth: String| {
        vec![
            ("authorization".to_owned(), auth),
            ("content-type".to_owned(), "application/json".to_owned()),
            ("x-tc-action".to_owned(), "ChatCompletions".to_owned()),
            ("x-tc-version".to_owned(), "2023-09-01".to_owned()),
            ("x-tc-timestamp".to_owned(), ts.to_string()),
        ]
    };
    let post = |hs: Vec<(String, String)>, body: String| {
        let url = emu.base_url();
        async move {
            let refs: Vec<(&str, &str)> =
                hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            send("POST", &url, &refs, &body).await
        }
    };
    let r = post(
        headers(authorization(
            "AKIDnobody",
            HUNYUAN_SECRET_KEY,
            &host,
            ts,
            &body,
        )),
        body.clone(),
    )
    .await;
    assert_eq!(error_code(&r), "AuthFailure.SecretIdNotFound");
    let r = post(
        headers(authorization(HUNYUAN_SECRET_ID, "wrong", &host, ts, &body)),
        body.clone(),
    )
    .await;
    assert_eq!(error_code(&r), "AuthFailure.SignatureFailure");
    let good = authorization(HUNYUAN_SECRET_ID, HUNYUAN_SECRET_KEY, &host, ts, &body);
    let r = post(headers(good.clone()), body.replace("Hello", "Hallo")).await;
    assert_eq!(error_code(&r), "AuthFailure.SignatureFailure");
    let r = post(
        headers("Bearer sk-emulator-hunyuan".to_owned()),
        body.clone(),
    )
    .await;
    assert_eq!(error_code(&r), "AuthFailure.InvalidAuthorization");
    let r = post(headers(good), body.clone()).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["Response"]["Error"].is_null());

    // A client clock 10 minutes behind is refused with SignatureExpire; the Date header is the server time.
    let r = call_at(&emu, &hello(), ts - 600).await;
    assert_eq!(error_code(&r), "AuthFailure.SignatureExpire");
    assert!(r.json()["Response"]["Error"]["Message"]
        .as_str()
        .unwrap()
        .starts_with("Signature expired"));
    assert!(r.header("date").is_some());
    assert_eq!(
        emu.requests().iter().map(|r| r.status).collect::<Vec<_>>(),
        [200; 6]
    );
}

#[tokio::test]
async fn skewed_emulator_clock_expires_signatures_and_reports_its_time() {
    let emu = hunyuan().await;
    emu.set_clock_offset_ms(3_600_000);
    assert_eq!(emu.clock_offset_ms(), 3_600_000);
    let r = call(&emu, &hello()).await;
    assert_eq!(error_code(&r), "AuthFailure.SignatureExpire");
    // The Date header carries the skewed clock; a client that signs with it gets through.
    let date = r.header("date").unwrap().to_owned();
    let server = emu.now_unix_ms() / 1000;
    assert!(date.ends_with("GMT"), "{date}");
    assert_eq!(
        r.headers.get_all("date").iter().count(),
        1,
        "one Date header"
    );
    let r = call_at(&emu, &hello(), server).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["Response"]["Error"].is_null(), "{:?}", r.body);

    // The control route moves the clock too.
    let url = format!("{}/__emulator/clock", emu.root_url());
    let r = send("PUT", &url, &[], r#"{"offset_ms": 0}"#).await;
    assert_eq!(r.status, 204);
    let r = send("GET", &url, &[], "").await;
    assert_eq!(r.json()["offset_ms"], 0);
    assert_eq!(call(&emu, &hello()).await.status, 200);
    assert_eq!(send("PUT", &url, &[], "{}").await.status, 400);
}

#[tokio::test]
async fn chat_answers_with_the_documented_shape() {
    let emu = hunyuan().await;
    let r = call(&emu, &hello()).await;
    let j = r.json();
    let resp = &j["Response"];
    assert_eq!(resp["RequestId"], "00000000-0000-4000-8000-000000000001");
    assert_eq!(resp["Id"], resp["RequestId"]);
    assert!(resp["Created"].is_u64());
    assert!(resp["Note"].is_string());
    let c = &resp["Choices"][0];
    assert_eq!(c["FinishReason"], "stop");
    assert_eq!(
        c["Message"],
        json!({"Role": "assistant", "Content": "You said: Hello there"})
    );
    // prompt: 2 pieces + 4; completion: "You ", "said: ", "Hello ", "there".
    assert_eq!(
        resp["Usage"],
        json!({"PromptTokens": 6, "CompletionTokens": 4, "TotalTokens": 10})
    );

    // Hunyuan keeps the stop string (it stops after the match).
    let mut body = hello();
    body["Stop"] = json!(["said"]);
    let j = call(&emu, &body).await.json();
    assert_eq!(
        j["Response"]["Choices"][0]["Message"]["Content"],
        "You said"
    );
}

#[tokio::test]
async fn stream_has_empty_finish_until_the_end_cumulative_usage_and_no_done() {
    let emu = hunyuan().await;
    let mut body = hello();
    body["Stream"] = json!(true);
    let r = call(&emu, &body).await;
    assert_eq!(r.content_type, "text/event-stream");
    assert_eq!(
        r.header("x-tc-requestid"),
        Some("00000000-0000-4000-8000-000000000001")
    );
    let fs = frames(r.text());
    assert!(r.text().starts_with("data: {"));
    assert_eq!(fs.len(), 5);
    let events: Vec<Value> = fs.iter().map(common::Frame::json).collect();
    let text: String = events
        .iter()
        .map(|e| e["Choices"][0]["Delta"]["Content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "You said: Hello there");
    for (i, e) in events.iter().enumerate() {
        assert!(e.get("Response").is_none());
        let finish = &e["Choices"][0]["FinishReason"];
        if i + 1 < events.len() {
            assert_eq!(finish, "");
            assert_eq!(e["Usage"]["CompletionTokens"], i as u64 + 1);
        } else {
            assert_eq!(finish, "stop");
            assert_eq!(e["Usage"]["TotalTokens"], 10);
        }
        assert_eq!(e["Id"], "00000000-0000-4000-8000-000000000001");
    }
    assert!(!r.text().contains("[DONE]"));
}

fn weather(stream: bool) -> Value {
    json!({"Model": "hunyuan-functioncall", "Stream": stream,
           "Messages": [{"Role": "user", "Content": "Weather in Shenzhen?"}],
           "Tools": [{"Type": "function", "Function": {"Name": "get_weather", "Description": "Get weather",
               "Parameters": "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}"}},
                     {"Type": "function", "Function": {"Name": "get_time", "Parameters": "{\"type\":\"object\",\"properties\":{}}"}}],
           "ToolChoice": "auto"})
}

#[tokio::test]
async fn tool_calls_whole_and_streamed() {
    let emu = hunyuan().await;
    let j = call(&emu, &weather(false)).await.json();
    let c = &j["Response"]["Choices"][0];
    assert_eq!(c["FinishReason"], "tool_calls");
    let calls = c["Message"]["ToolCalls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "one call: Hunyuan answers the first tool");
    assert_eq!(
        calls[0],
        json!({"Id": "call_0", "Type": "function", "Index": 0,
               "Function": {"Name": "get_weather", "Arguments": "{\"city\":\"Weather in Shenzhen?\"}"}})
    );

    let r = call(&emu, &weather(true)).await;
    let events: Vec<Value> = frames(r.text()).iter().map(common::Frame::json).collect();
    let mut args = String::new();
    let mut names = Vec::new();
    for e in &events {
        for tc in e["Choices"][0]["Delta"]["ToolCalls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(tc["Id"], "call_0");
            assert_eq!(tc["Index"], 0);
            if let Some(n) = tc["Function"]["Name"].as_str() {
                names.push(n.to_owned());
            }
            args.push_str(tc["Function"]["Arguments"].as_str().unwrap());
        }
    }
    assert_eq!(names, ["get_weather"]);
    assert_eq!(args, "{\"city\":\"Weather in Shenzhen?\"}");
    assert_eq!(
        events.last().unwrap()["Choices"][0]["FinishReason"],
        "tool_calls"
    );

    // ToolChoice custom picks the named tool; none answers with text.
    let mut body = weather(false);
    body["ToolChoice"] = json!("custom");
    body["CustomTool"] = json!({"Type": "function", "Function": {"Name": "get_time"}});
    let j = call(&emu, &body).await.json();
    assert_eq!(
        j["Response"]["Choices"][0]["Message"]["ToolCalls"][0]["Function"]["Name"],
        "get_time"
    );
    body["ToolChoice"] = json!("none");
    let j = call(&emu, &body).await.json();
    assert_eq!(j["Response"]["Choices"][0]["FinishReason"], "stop");
}

#[tokio::test]
async fn validation_errors_are_http_200_tencent_errors() {
    let emu = hunyuan().await;
    let cases = [
        (
            json!({"Messages": [{"Role": "user", "Content": "x"}]}),
            "MissingParameter",
        ),
        (json!({"Model": "m"}), "MissingParameter"),
        (
            json!({"Model": "m", "Messages": [{"Role": "robot", "Content": "x"}]}),
            "InvalidParameter",
        ),
        (
            json!({"Model": "m", "Messages": [{"Role": "user", "Content": "x"}, {"Role": "assistant", "Content": "y"}]}),
            "InvalidParameter",
        ),
        (
            json!({"Model": "m", "Messages": [{"Role": "tool", "Content": "x"}]}),
            "InvalidParameter",
        ),
        (
            json!({"Model": "m", "Messages": [{"Role": "user", "Content": "x"}], "Temperature": 3}),
            "InvalidParameterValue",
        ),
        (
            json!({"Model": "m", "Messages": [{"Role": "user", "Content": "x"}], "Seed": 0}),
            "InvalidParameterValue",
        ),
        (
            json!({"Model": "m", "Messages": [{"Role": "user", "Content": "x"}],
                "Tools": [{"Type": "function", "Function": {"Name": "f", "Parameters": {"type": "object"}}}]}),
            "InvalidParameter",
        ),
    ];
    for (body, code) in cases {
        let r = call(&emu, &body).await;
        assert_eq!(error_code(&r), code, "{body}");
    }
    // A wrong action or version is refused after the signature check.
    let body = hello().to_string();
    let ts = now();
    let auth = authorization(
        HUNYUAN_SECRET_ID,
        HUNYUAN_SECRET_KEY,
        &emu.addr().to_string(),
        ts,
        &body,
    );
    let ts = ts.to_string();
    let r = send(
        "POST",
        &emu.base_url(),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("x-tc-action", "DescribeRegions"),
            ("x-tc-version", "2023-09-01"),
            ("x-tc-timestamp", &ts),
        ],
        &body,
    )
    .await;
    assert_eq!(error_code(&r), "InvalidAction");
}

#[tokio::test]
async fn faults_use_hunyuan_codes_and_events() {
    let emu = hunyuan().await;
    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let r = call(&emu, &hello()).await;
    assert_eq!(error_code(&r), "FailedOperation.ResourcePackExhausted");

    emu.push_fault(Fault::once(FaultKind::Status {
        status: 429,
        body: None,
        retry_after: None,
    }));
    let r = call(&emu, &hello()).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json()["Response"]["Error"]["Code"],
        "RequestLimitExceeded"
    );

    emu.push_fault(Fault::once(FaultKind::ErrorBody200));
    assert_eq!(error_code(&call(&emu, &hello()).await), "InternalError");

    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 2 }));
    let mut body = hello();
    body["Stream"] = json!(true);
    let r = call(&emu, &body).await;
    let events: Vec<Value> = frames(r.text()).iter().map(common::Frame::json).collect();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["ErrorMsg"]["Code"], 4000);

    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 0 }));
    let j = call(&emu, &hello()).await.json();
    assert_eq!(j["Response"]["Choices"][0]["FinishReason"], "sensitive");

    // An error answer stays an error.
    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 0 }));
    let r = call(&emu, &json!({"Model": "m"})).await;
    assert_eq!(error_code(&r), "MissingParameter");

    emu.push_fault(Fault::once(FaultKind::MalformedFrame { after: 1 }));
    let r = call(&emu, &body).await;
    let bad = frames(r.text())
        .iter()
        .filter(|f| serde_json::from_str::<Value>(f.data().unwrap()).is_err())
        .count();
    assert_eq!(bad, 1);
}

#[tokio::test]
async fn openai_compatible_endpoint_uses_the_bearer_key() {
    let emu = hunyuan().await;
    let url = format!("{}/chat/completions", emu.compat_base_url().unwrap());
    let body = json!({"model": "hunyuan-turbos-latest", "messages": [{"role": "user", "content": "hi"}],
                      "enable_enhancement": false});
    let r = common::post(&url, "sk-emulator-hunyuan", &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["choices"][0]["message"]["content"], "You said: hi");
    let r = common::post(&url, "sk-wrong", &body).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");
    let r = common::post(
        &format!("{}/embeddings", emu.compat_base_url().unwrap()),
        "sk-emulator-hunyuan",
        &json!({"model": "hunyuan-embedding", "input": "hi"}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"][0]["index"], 0);
}
