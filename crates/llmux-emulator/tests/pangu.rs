//! Huawei Cloud Pangu: IAM tokens (issue, expiry, invalidation), APIG AK/SK signatures, V1/V2 chat, faults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use hmac::{Hmac, KeyInit as _, Mac as _};
use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

const PROJECT: &str = "0a0b0c0d0e0f00010203040506070809";
const AK: &str = "EMUPANGUAK0000000001";
const SK: &str = "emu-pangu-secret-key-0000000000000000000";

async fn pangu() -> Emulator {
    Emulator::start(EmulatorConfig::new(Vendor::Pangu))
        .await
        .unwrap()
}

fn password_body(password: &str, scope: Value) -> String {
    json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "domain": {"name": "emu-account"}, "name": "emu-user", "password": password}}},
        "scope": scope}})
    .to_string()
}

fn project_scope() -> Value {
    json!({"project": {"name": "cn-southwest-2"}})
}

async fn token(emu: &Emulator, body: &str) -> common::Resp {
    common::send(
        "POST",
        &format!("{}/v3/auth/tokens?nocatalog=true", emu.base_url()),
        &[("content-type", "application/json;charset=UTF-8")],
        body,
    )
    .await
}

async fn issue(emu: &Emulator) -> String {
    let r = token(emu, &password_body("emu-password", project_scope())).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.header("x-subject-token").unwrap().to_owned()
}

fn v1_url(emu: &Emulator, project: &str) -> String {
    format!(
        "{}/v1/{project}/deployments/dep-001/chat/completions",
        emu.base_url()
    )
}

fn chat_body(stream: bool) -> Value {
    json!({"messages": [{"role": "user", "content": "hello pangu"}], "max_tokens": 256,
           "temperature": 0.3, "stream": stream})
}

async fn with_token(url: &str, token: &str, body: &Value) -> common::Resp {
    common::send(
        "POST",
        url,
        &[
            ("x-auth-token", token),
            ("content-type", "application/json"),
        ],
        &body.to_string(),
    )
    .await
}

#[tokio::test]
async fn iam_vector_body_gets_201_with_the_token_in_x_subject_token() {
    let emu = Emulator::start(
        EmulatorConfig::new(Vendor::Pangu)
            .with_credential("username", "api-user")
            .with_credential("password", "P@ssw0rd-public")
            .with_credential("domain_name", "example-account"),
    )
    .await
    .unwrap();
    let body_wire = "{\"auth\": {\"identity\": {\"methods\": [\"password\"], \"password\": {\"user\": {\"domain\": {\"name\": \"example-account\"}, \"name\": \"api-user\", \"password\": \"P@ssw0rd-public\"}}}, \"scope\": {\"project\": {\"name\": \"cn-southwest-2\"}}}}";
    let r = token(&emu, body_wire).await;
    assert_eq!(r.status, 201);
    let t = r.header("x-subject-token").unwrap();
    assert!(t.starts_with("MII") && t.len() > 200);
    let j = r.json();
    assert_eq!(j["token"]["methods"], json!(["password"]));
    assert_eq!(j["token"]["user"]["name"], "api-user");
    assert_eq!(j["token"]["project"]["name"], "cn-southwest-2");
    assert_eq!(j["token"]["project"]["id"], PROJECT);
    assert_eq!(j["token"]["roles"], json!([]));
    assert!(j["token"].get("catalog").is_none());
    let issued = j["token"]["issued_at"].as_str().unwrap();
    let expires = j["token"]["expires_at"].as_str().unwrap();
    assert!(issued.ends_with('Z') && expires.ends_with('Z'));
    assert_ne!(issued, expires);

    // Without nocatalog, the catalog points at this emulator.
    let r = common::send(
        "POST",
        &format!("{}/v3/auth/tokens", emu.base_url()),
        &[],
        body_wire,
    )
    .await;
    assert_eq!(
        r.json()["token"]["catalog"][0]["endpoints"][0]["url"],
        emu.root_url()
    );
}

#[tokio::test]
async fn iam_rejects_wrong_credentials_bad_bodies_and_unknown_projects() {
    let emu = pangu().await;
    let r = token(&emu, &password_body("nope", project_scope())).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": {"code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}})
    );
    assert!(r.header("x-subject-token").is_none());
    assert_eq!(token(&emu, "{").await.status, 400);
    let r = token(
        &emu,
        &password_body("emu-password", json!({"project": {"name": "cn-north-4"}})),
    )
    .await;
    assert_eq!(r.status, 400);
    // hw_ak_sk identity (PROTOCOLS.md 5.1) with a project id scope.
    let body = json!({"auth": {"identity": {"methods": ["hw_ak_sk"],
        "hw_ak_sk": {"access": {"key": AK}, "secret": {"key": SK}}},
        "scope": {"project": {"id": PROJECT}}}});
    let r = token(&emu, &body.to_string()).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["token"]["methods"], json!(["hw_ak_sk"]));
}

#[tokio::test]
async fn v1_chat_with_a_token_answers_openai_shaped() {
    let emu = pangu().await;
    let t = issue(&emu).await;
    let r = with_token(&v1_url(&emu, PROJECT), &t, &chat_body(false)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let j = r.json();
    assert_eq!(j["object"], "chat.completion");
    assert_eq!(j["model"], "dep-001");
    assert_eq!(j["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        j["choices"][0]["message"]["content"],
        "You said: hello pangu"
    );
    assert_eq!(j["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        j["usage"],
        json!({"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10})
    );
    assert!(r.header("x-request-id").is_some());

    let r = with_token(&v1_url(&emu, PROJECT), &t, &chat_body(true)).await;
    let frames = common::frames(r.text());
    assert!(r.text().starts_with("data: {"));
    assert_eq!(frames.last().unwrap().data(), Some("[DONE]"));
    assert_eq!(common::openai_stream_text(&frames), "You said: hello pangu");
    let last = frames[frames.len() - 2].json();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["usage"]["total_tokens"], 10);
    assert_eq!(last["object"], "chat.completion.chunk");
}

#[tokio::test]
async fn v2_chat_needs_a_model_and_answers_tool_calls() {
    let emu = pangu().await;
    let t = issue(&emu).await;
    let url = format!("{}/api/v2/chat/completions", emu.base_url());
    let r = with_token(&url, &t, &chat_body(false)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_code"], "PANGU.0400");
    let mut body = chat_body(false);
    body["model"] = json!("pangu-nlp-n2");
    body["tools"] = json!([{"type": "function", "function": {"name": "f",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]);
    let j = with_token(&url, &t, &body).await.json();
    assert_eq!(j["model"], "pangu-nlp-n2");
    assert_eq!(j["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        j["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        r#"{"q":"hello pangu"}"#
    );
}

#[tokio::test]
async fn unknown_missing_and_forgotten_tokens_are_401_apig_1002() {
    let emu = pangu().await;
    let url = v1_url(&emu, PROJECT);
    let want = |r: &common::Resp| {
        assert_eq!(r.status, 401);
        let j = r.json();
        assert_eq!(j["error_code"], "APIG.1002");
        assert_eq!(j["error_msg"], "Incorrect token or token resolution failed");
        assert!(j["request_id"].is_string());
    };
    want(&with_token(&url, "MIIforged", &chat_body(false)).await);
    want(&common::send("POST", &url, &[], &chat_body(false).to_string()).await);
    let t = issue(&emu).await;
    assert_eq!(with_token(&url, &t, &chat_body(false)).await.status, 200);
    emu.expire_tokens();
    want(&with_token(&url, &t, &chat_body(false)).await);
    // Over the control surface too.
    let t = issue(&emu).await;
    let r = common::send(
        "POST",
        &format!("{}/__emulator/tokens/expire", emu.root_url()),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 204);
    want(&with_token(&url, &t, &chat_body(false)).await);
    // The default key is a static token that never expires.
    assert_eq!(
        with_token(&url, Vendor::Pangu.default_key(), &chat_body(false))
            .await
            .status,
        200
    );
}

#[tokio::test(start_paused = true)]
async fn tokens_expire_on_the_emulator_clock() {
    let emu = pangu().await;
    let url = v1_url(&emu, PROJECT);
    let long = issue(&emu).await;
    emu.set_token_ttl(Duration::from_secs(60));
    let short = issue(&emu).await;
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(
        with_token(&url, &short, &chat_body(false)).await.status,
        200
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        with_token(&url, &short, &chat_body(false)).await.status,
        401
    );
    assert_eq!(with_token(&url, &long, &chat_body(false)).await.status, 200);
    // The default 24 h lifetime ends on the clock too.
    emu.set_clock_offset(24 * 3600);
    assert_eq!(with_token(&url, &long, &chat_body(false)).await.status, 401);
    let r = common::send(
        "PUT",
        &format!("{}/__emulator/token_ttl", emu.root_url()),
        &[],
        r#"{"secs": 5}"#,
    )
    .await;
    assert_eq!(r.status, 204);
    let t = issue(&emu).await;
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(with_token(&url, &t, &chat_body(false)).await.status, 401);
}

#[tokio::test]
async fn tokens_are_scoped_to_their_project() {
    let emu = pangu().await;
    let t = issue(&emu).await;
    let r = with_token(
        &v1_url(&emu, "ffffffffffffffffffffffffffffffff"),
        &t,
        &chat_body(false),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error_code"], "APIG.1005");
    let r = token(
        &emu,
        &password_body("emu-password", json!({"domain": {"name": "emu-account"}})),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["token"]["domain"]["name"], "emu-account");
    let domain_token = r.header("x-subject-token").unwrap().to_owned();
    let r = with_token(&v1_url(&emu, PROJECT), &domain_token, &chat_body(false)).await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn one_token_request_under_fifty_concurrent_chats_is_visible_in_the_log() {
    let emu = pangu().await;
    let t = issue(&emu).await;
    let url = v1_url(&emu, PROJECT);
    let body = chat_body(false);
    let calls = (0..50).map(|_| with_token(&url, &t, &body));
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(|r| r.status == 200));
    let log = emu.requests();
    assert_eq!(
        log.iter().filter(|r| r.path == "/v3/auth/tokens").count(),
        1
    );
    assert_eq!(
        log.iter()
            .filter(|r| r.path.ends_with("/chat/completions"))
            .count(),
        50
    );
    assert_eq!(log[0].path, "/v3/auth/tokens");
    assert_eq!(log[0].status, 201);
    assert_eq!(log[0].query.as_deref(), Some("nocatalog=true"));
}

// ---------------------------------------------------------------- AK/SK

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Signs a POST with a JSON body as PROTOCOLS.md 5.2 describes (written independently of the emulator).
fn signed_headers(
    emu: &Emulator,
    path: &str,
    body: &str,
    sk: &str,
    date: &str,
) -> Vec<(String, String)> {
    let host = emu.addr().to_string();
    let headers = [
        ("content-type", "application/json"),
        ("host", host.as_str()),
        ("x-project-id", PROJECT),
        ("x-sdk-date", date),
    ];
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed = "content-type;host;x-project-id;x-sdk-date";
    let canonical = format!(
        "POST\n{path}/\n\n{canonical_headers}\n{signed}\n{}",
        hex(&Sha256::digest(body.as_bytes()))
    );
    let sts = format!(
        "SDK-HMAC-SHA256\n{date}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(sk.as_bytes()).unwrap();
    mac.update(sts.as_bytes());
    let sig = hex(&mac.finalize().into_bytes());
    vec![
        ("content-type".into(), "application/json".into()),
        ("x-project-id".into(), PROJECT.into()),
        ("x-sdk-date".into(), date.into()),
        (
            "authorization".into(),
            format!("SDK-HMAC-SHA256 Access={AK}, SignedHeaders={signed}, Signature={sig}"),
        ),
    ]
}

fn sdk_date(offset_secs: i64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset_secs;
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days (H. Hinnant), written out here so the test does not share the emulator's code.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

async fn send_signed(url: &str, headers: &[(String, String)], body: &str) -> common::Resp {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    common::send("POST", url, &h, body).await
}

#[tokio::test]
async fn aksk_signed_requests_verify_and_bad_ones_get_apig_0301() {
    let emu = pangu().await;
    let path = format!("/v1/{PROJECT}/deployments/dep-001/chat/completions");
    let url = format!("{}{path}", emu.base_url());
    let body = chat_body(false).to_string();

    let r = send_signed(
        &url,
        &signed_headers(&emu, &path, &body, SK, &sdk_date(0)),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "You said: hello pangu"
    );

    let r = send_signed(
        &url,
        &signed_headers(&emu, &path, &body, "wrong", &sdk_date(0)),
        &body,
    )
    .await;
    assert_eq!(r.status, 401);
    let j = r.json();
    assert_eq!(j["error_code"], "APIG.0301");
    assert!(j["error_msg"]
        .as_str()
        .unwrap()
        .starts_with("Incorrect IAM authentication information: verify aksk signature fail"));
    assert!(j["request_id"].is_string());

    // The signature covers the exact body bytes.
    let headers = signed_headers(&emu, &path, &body, SK, &sdk_date(0));
    let r = send_signed(&url, &headers, &body.replace("0.3", "0.30")).await;
    assert_eq!(r.json()["error_code"], "APIG.0301");

    for offset in [-16 * 60, 16 * 60] {
        let r = send_signed(
            &url,
            &signed_headers(&emu, &path, &body, SK, &sdk_date(offset)),
            &body,
        )
        .await;
        assert_eq!(r.status, 401);
        assert!(r.json()["error_msg"]
            .as_str()
            .unwrap()
            .contains("signature expired"));
    }
    let r = send_signed(
        &url,
        &signed_headers(&emu, &path, &body, SK, &sdk_date(-14 * 60)),
        &body,
    )
    .await;
    assert_eq!(r.status, 200);
    // Clock skew can also come from the emulator side.
    emu.set_clock_offset(20 * 60);
    let r = send_signed(
        &url,
        &signed_headers(&emu, &path, &body, SK, &sdk_date(0)),
        &body,
    )
    .await;
    assert!(r.json()["error_msg"]
        .as_str()
        .unwrap()
        .contains("signature expired"));
}

// ---------------------------------------------------------------- faults and validation

#[tokio::test]
async fn faults_use_huawei_bodies_and_can_spare_the_token_path() {
    let emu = pangu().await;
    emu.push_fault(
        Fault::once(FaultKind::Status {
            status: 429,
            body: None,
            retry_after: None,
        })
        .on_path("/chat/completions"),
    );
    let t = issue(&emu).await;
    let url = v1_url(&emu, PROJECT);
    let r = with_token(&url, &t, &chat_body(false)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error_code"], "APIG.0308");

    emu.push_fault(Fault::once(FaultKind::Status {
        status: 503,
        body: None,
        retry_after: None,
    }));
    let r = token(&emu, &password_body("emu-password", project_scope())).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], 503);

    emu.push_fault(Fault::once(FaultKind::QuotaExhausted));
    let r = with_token(&url, &t, &chat_body(false)).await;
    assert_eq!(
        (r.status, r.json()["error_code"].clone()),
        (403, json!("PANGU.0403"))
    );

    emu.push_fault(Fault::once(FaultKind::ErrorBody200));
    let r = with_token(&url, &t, &chat_body(false)).await;
    assert_eq!(
        (r.status, r.json()["error_code"].clone()),
        (200, json!("PANGU.0500"))
    );

    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 2 }));
    let r = with_token(&url, &t, &chat_body(true)).await;
    let frames = common::frames(r.text());
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[2].json()["error_code"], "PANGU.0451");

    emu.push_fault(Fault::once(FaultKind::ErrorEvent { after: 0 }));
    let r = with_token(&url, &t, &chat_body(false)).await;
    assert_eq!(
        (r.status, r.json()["error_code"].clone()),
        (400, json!("PANGU.0451"))
    );

    emu.push_fault(Fault::once(FaultKind::StreamCutAfter(2)));
    let resp = common::client()
        .post(&url)
        .header("x-auth-token", &t)
        .body(chat_body(true).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.bytes().await.is_err());
}

#[tokio::test]
async fn invalid_chat_bodies_are_400_pangu_0400() {
    let emu = pangu().await;
    let t = issue(&emu).await;
    let url = v1_url(&emu, PROJECT);
    for body in [
        json!({"messages": []}),
        json!({"messages": [{"role": "user", "content": "x"}], "temperature": 1.5}),
        json!({"messages": [{"role": "robot", "content": "x"}]}),
        json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
    ] {
        let r = with_token(&url, &t, &body).await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.json()["error_code"], "PANGU.0400");
    }
    // A message without a role is a user message.
    let r = with_token(&url, &t, &json!({"messages": [{"content": "x"}]})).await;
    assert_eq!(r.json()["choices"][0]["message"]["content"], "You said: x");
    let r = with_token(&format!("{}/v1/unknown", emu.base_url()), &t, &json!({})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error_code"], "APIG.0101");
}
