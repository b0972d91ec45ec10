//! Traces: a real OTLP/HTTP receiver (protobuf export requests decoded with
//! opentelemetry-proto, on 127.0.0.1:0) gets a span per request (server kind) and a span per
//! upstream attempt (client kind, its child) with the GenAI attributes, for a whole and a
//! streamed chat; an incoming `traceparent` is continued; no secret is in any attribute.
//!
//! One test per binary: the exporter is installed as the process's global subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use common::*;
use llmux_emulator::{Fault, FaultKind, Vendor};
use llmux_gateway::config::TelemetryConfig;
use llmux_gateway::telemetry::Tracing;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt;

/// One received span: ids, name, kind and attributes (as strings), and the service name.
#[derive(Debug, Clone)]
struct Got {
    trace_id: String,
    span_id: String,
    parent_id: String,
    name: String,
    kind: i32,
    error: bool,
    attrs: HashMap<String, String>,
    service: String,
}

impl Got {
    fn attr(&self, k: &str) -> &str {
        self.attrs
            .get(k)
            .map_or_else(|| panic!("no {k} on {self:#?}"), String::as_str)
    }
}

fn text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// The OTLP/HTTP receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
async fn collector() -> (String, Arc<Mutex<Vec<Got>>>, Arc<Mutex<u32>>) {
    let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
    let posts: Arc<Mutex<u32>> = Arc::default();
    let (sink, count) = (spans.clone(), posts.clone());
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: Bytes| {
            let (sink, count) = (sink.clone(), count.clone());
            async move {
                assert_eq!(headers["content-type"], "application/x-protobuf");
                *count.lock().unwrap() += 1;
                let req =
                    ExportTraceServiceRequest::decode(body).expect("a protobuf export request");
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .map(|kv| text(kv.value.as_ref()))
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            sink.lock().unwrap().push(Got {
                                trace_id: hex::encode(&s.trace_id),
                                span_id: hex::encode(&s.span_id),
                                parent_id: hex::encode(&s.parent_span_id),
                                name: s.name.clone(),
                                kind: s.kind,
                                error: s.status.as_ref().is_some_and(|st| st.code == 2),
                                attrs: s
                                    .attributes
                                    .iter()
                                    .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                                    .collect(),
                                service: service.clone(),
                            });
                        }
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans, posts)
}

/// Waits (bounded) until `done` holds for the received spans.
async fn wait_for(
    traces: &Tracing,
    spans: &Arc<Mutex<Vec<Got>>>,
    done: impl Fn(&[Got]) -> bool,
) -> Vec<Got> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        traces.flush().await;
        let got = spans.lock().unwrap().clone();
        if done(&got) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans did not arrive: {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_whole_and_streamed_chats_reach_an_otlp_collector() {
    let (url, spans, posts) = collector().await;
    let traces = Tracing::start(&TelemetryConfig {
        // The base URL: `/v1/traces` is added, as the config's resolution does.
        otlp_traces_url: Some(format!("{url}/v1/traces")),
        service_name: "llmux-test".into(),
        sample_ratio: 1.0,
    })
    .unwrap()
    .expect("an endpoint is set");
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(traces.layer()))
        .unwrap();

    let oa = emulator(Vendor::OpenAi).await;
    let gw = start_with_store(&channel("oa", "openai", &oa, "[\"gpt-4o-mini\"]", "")).await;
    let (key, _) = create_key(&gw, json!({"name":"traced"})).await;
    // The first attempt fails (500) and is retried: two attempt spans under one request span.
    oa.push_fault(Fault::once(FaultKind::Status {
        status: 500,
        body: None,
        retry_after: None,
    }));
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .json(&json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    let resp = gw
        .http
        .post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&key)
        .json(&json!({"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a b c"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("[DONE]"));

    let got = wait_for(&traces, &spans, |g| {
        g.iter()
            .filter(|s| s.kind == SpanKind::Server as i32)
            .count()
            >= 3
            && g.iter()
                .filter(|s| s.kind == SpanKind::Client as i32)
                .count()
                >= 3
    })
    .await;
    assert!(*posts.lock().unwrap() >= 1);
    let chats: Vec<&Got> = got
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32 && s.name == "POST /v1/chat/completions")
        .collect();
    assert_eq!(chats.len(), 2, "{got:#?}");
    let (whole, streamed) = if chats[0].trace_id == TRACE_ID {
        (chats[0], chats[1])
    } else {
        (chats[1], chats[0])
    };

    // The whole answer continues the incoming trace.
    assert_eq!(whole.trace_id, TRACE_ID);
    assert_eq!(whole.parent_id, PARENT_ID);
    assert_ne!(
        streamed.trace_id, TRACE_ID,
        "a new trace without traceparent"
    );
    for (server, stream) in [(whole, "false"), (streamed, "true")] {
        assert_eq!(server.service, "llmux-test");
        assert_eq!(server.attr("gen_ai.operation.name"), "chat");
        assert_eq!(server.attr("gen_ai.request.model"), "gpt-4o-mini");
        assert_eq!(server.attr("gen_ai.provider.name"), "openai");
        assert_eq!(server.attr("gen_ai.system"), "openai");
        assert!(!server.attr("gen_ai.response.model").is_empty());
        assert!(
            server
                .attr("gen_ai.usage.input_tokens")
                .parse::<u64>()
                .unwrap()
                > 0
        );
        assert!(
            server
                .attr("gen_ai.usage.output_tokens")
                .parse::<u64>()
                .unwrap()
                > 0
        );
        assert_eq!(server.attr("http.response.status_code"), "200");
        assert_eq!(server.attr("http.request.method"), "POST");
        assert_eq!(server.attr("url.path"), "/v1/chat/completions");
        assert_eq!(server.attr("llmux.channel"), "oa");
        assert_eq!(server.attr("llmux.key"), "traced");
        assert_eq!(server.attr("llmux.stream"), stream);
        assert!(!server.attrs.contains_key("error.type"), "{server:#?}");
        assert!(!server.error);
    }

    let children = |parent: &Got| -> Vec<&Got> {
        got.iter()
            .filter(|s| s.parent_id == parent.span_id && s.trace_id == parent.trace_id)
            .collect()
    };
    let mut attempts = children(whole);
    attempts.sort_by_key(|s| s.attr("llmux.attempt").to_owned());
    assert_eq!(attempts.len(), 2, "{got:#?}");
    let (failed, ok) = (attempts[0], attempts[1]);
    for a in [failed, ok] {
        assert_eq!(a.kind, SpanKind::Client as i32);
        assert_eq!(a.name, "chat gpt-4o-mini");
        assert_eq!(a.attr("gen_ai.operation.name"), "chat");
        assert_eq!(a.attr("gen_ai.provider.name"), "openai");
        assert_eq!(a.attr("gen_ai.request.model"), "gpt-4o-mini");
        assert_eq!(a.attr("server.address"), "127.0.0.1");
    }
    assert_eq!(failed.attr("llmux.attempt"), "1");
    assert_eq!(failed.attr("error.type"), "upstream_server");
    assert_eq!(failed.attr("http.response.status_code"), "500");
    assert!(failed.error);
    assert_eq!(ok.attr("llmux.attempt"), "2");
    assert_eq!(ok.attr("http.response.status_code"), "200");
    assert!(
        ok.attr("gen_ai.usage.output_tokens")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(!ok.attr("gen_ai.response.model").is_empty());
    assert!(!ok.error);

    let stream_attempts = children(streamed);
    assert_eq!(stream_attempts.len(), 1, "{got:#?}");
    let sa = stream_attempts[0];
    assert_eq!(sa.attr("http.response.status_code"), "200");
    assert!(
        sa.attr("gen_ai.usage.output_tokens")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(!sa.attr("gen_ai.response.model").is_empty());

    // No secret in any attribute: not the client key, not the upstream key.
    for s in &got {
        for v in s.attrs.values() {
            assert!(
                !v.contains(&key) && !v.contains("sk-emulator") && !v.contains(KEY),
                "{s:#?}"
            );
        }
    }
}
