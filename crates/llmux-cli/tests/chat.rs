//! `llmux chat` one-shot: the built binary against in-process emulators.

mod common;

use common::{emulator, env_for, only_body, only_request, run};
use llmux_emulator::Vendor;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answer_is_printed_with_a_final_newline() {
    let emu = emulator(Vendor::DashScope).await;
    let env = env_for(&emu, Vendor::DashScope);
    let out = run(
        &["chat", "hello there", "-m", "dashscope/qwen-plus"],
        &env,
        None,
    )
    .await;
    assert_eq!(out.ok(), "You said: hello there\n");
    let req = only_request(&emu);
    assert_eq!(req.header("x-dashscope-sse"), Some("enable"), "{req:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stream_prints_the_same_text() {
    let emu = emulator(Vendor::OpenAi).await;
    let env = env_for(&emu, Vendor::OpenAi);
    let out = run(
        &[
            "chat",
            "-m",
            "openai/gpt-4o-mini",
            "--no-stream",
            "hi",
            "all",
        ],
        &env,
        None,
    )
    .await;
    assert_eq!(out.ok(), "You said: hi all\n");
    let body = only_body(&emu);
    assert_ne!(body["stream"], json!(true), "{body}");
    assert_eq!(body["model"], "gpt-4o-mini");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_prints_the_whole_response_streamed_or_not() {
    let emu = emulator(Vendor::OpenAi).await;
    let env = env_for(&emu, Vendor::OpenAi);
    for extra in [None, Some("--no-stream")] {
        let mut args = vec!["chat", "-m", "openai/gpt-4o", "--json", "hi"];
        args.extend(extra);
        let out = run(&args, &env, None).await;
        let v: Value = serde_json::from_str(out.ok()).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "You said: hi", "{v}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
        assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_events_prints_one_event_per_line() {
    let emu = emulator(Vendor::DashScope).await;
    let env = env_for(&emu, Vendor::DashScope);
    let out = run(
        &["chat", "-m", "dashscope/qwen-plus", "--json-events", "a b"],
        &env,
        None,
    )
    .await;
    let events: Vec<Value> = out
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["type"], "started");
    assert_eq!(events.last().unwrap()["type"], "finished");
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "text_delta")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "You said: a b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_is_read_from_piped_stdin() {
    let emu = emulator(Vendor::DashScope).await;
    let env = env_for(&emu, Vendor::DashScope);
    let out = run(
        &["chat", "-m", "dashscope/qwen-plus"],
        &env,
        Some("from a pipe\n"),
    )
    .await;
    assert_eq!(out.ok(), "You said: from a pipe\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_stdin_is_a_clear_error() {
    let emu = emulator(Vendor::DashScope).await;
    let env = env_for(&emu, Vendor::DashScope);
    let out = run(&["chat", "-m", "dashscope/qwen-plus"], &env, Some("\n")).await;
    assert!(out.err_line().contains("empty"), "{out:#?}");
    assert!(emu.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_prompt_is_sent_first() {
    let emu = emulator(Vendor::DashScope).await;
    let env = env_for(&emu, Vendor::DashScope);
    let out = run(
        &[
            "chat",
            "-m",
            "dashscope/qwen-plus",
            "--system",
            "be terse",
            "hi",
        ],
        &env,
        None,
    )
    .await;
    assert_eq!(out.ok(), "You said: hi\n");
    let body = only_body(&emu);
    let messages = &body["input"]["messages"];
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": "be terse"}),
        "{body}"
    );
    assert_eq!(messages[1]["role"], "user", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_flags_land_in_the_dashscope_parameters() {
    let emu = emulator(Vendor::DashScope).await;
    let env = env_for(&emu, Vendor::DashScope);
    let args = [
        "chat",
        "-m",
        "dashscope/qwen-plus",
        "--temperature",
        "0.3",
        "--top-p",
        "0.9",
        "--top-k",
        "20",
        "--max-tokens",
        "64",
        "--stop",
        "ZZZ",
        "--stop",
        "YYY",
        "--seed",
        "7",
        "--repetition-penalty",
        "1.1",
        "--presence-penalty",
        "-0.5",
        "--response-format",
        "json_object",
        "--enable-search",
        "--thinking",
        "on",
        "--thinking-budget",
        "256",
        "--extra",
        "custom_flag={\"a\":[1,2]}",
        "--extra",
        "vl_high_resolution_images=true",
        "hi",
    ];
    let out = run(&args, &env, None).await;
    assert_eq!(out.ok(), "You said: hi\n");
    let body = only_body(&emu);
    let p = &body["parameters"];
    let expect = json!({
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 20,
        "max_tokens": 64,
        "stop": ["ZZZ", "YYY"],
        "seed": 7,
        "repetition_penalty": 1.1,
        "presence_penalty": -0.5,
        "response_format": {"type": "json_object"},
        "enable_search": true,
        "enable_thinking": true,
        "thinking_budget": 256,
        "custom_flag": {"a": [1, 2]},
        "vl_high_resolution_images": true,
    });
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(&p[k], v, "parameter {k} in {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frequency_penalty_and_extra_land_in_the_openai_body() {
    let emu = emulator(Vendor::OpenAi).await;
    let env = env_for(&emu, Vendor::OpenAi);
    let args = [
        "chat",
        "-m",
        "openai/gpt-4o",
        "--frequency-penalty",
        "0.25",
        "--temperature",
        "1.5",
        "--seed",
        "42",
        "--extra",
        "user=alice",
        "hi",
    ];
    let out = run(&args, &env, None).await;
    assert_eq!(out.ok(), "You said: hi\n");
    let body = only_body(&emu);
    assert_eq!(body["frequency_penalty"], json!(0.25), "{body}");
    assert_eq!(body["temperature"], json!(1.5), "{body}");
    assert_eq!(body["seed"], json!(42), "{body}");
    assert_eq!(body["user"], json!("alice"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_defaults_to_llmux_model_and_base_url_flag_wins() {
    let emu = emulator(Vendor::OpenAi).await;
    let env = vec![
        ("LLMUX_MODEL", "openai/gpt-4.1".to_owned()),
        ("OPENAI_API_KEY", Vendor::OpenAi.default_key().to_owned()),
        // Unreachable on purpose: the flag must win over the variable.
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1".to_owned()),
    ];
    let out = run(&["chat", "--base-url", &emu.base_url(), "hi"], &env, None).await;
    assert_eq!(out.ok(), "You said: hi\n");
    assert_eq!(only_body(&emu)["model"], "gpt-4.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_goes_to_stderr_on_request() {
    let emu = emulator(Vendor::DashScope).await;
    let env = env_for(&emu, Vendor::DashScope);
    let out = run(
        &["chat", "-m", "dashscope/qwen-plus", "--usage", "hi"],
        &env,
        None,
    )
    .await;
    assert!(out.status.success(), "{out:#?}");
    assert_eq!(out.stdout, "You said: hi\n");
    assert!(out.stderr.starts_with("usage: "), "{out:#?}");
    assert!(out.stderr.contains("tokens"), "{out:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_names_the_variable_to_set() {
    let emu = emulator(Vendor::DashScope).await;
    let env = vec![("DASHSCOPE_BASE_URL", emu.base_url())];
    let out = run(&["chat", "-m", "dashscope/qwen-plus", "hi"], &env, None).await;
    assert!(out.err_line().contains("DASHSCOPE_API_KEY"), "{out:#?}");
    assert!(emu.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_says_it_was_rejected_without_echoing_it() {
    for vendor in [Vendor::DashScope, Vendor::OpenAi] {
        let emu = emulator(vendor).await;
        let mut env = env_for(&emu, vendor);
        let secret = "sk-this-key-is-wrong-123456";
        for (k, v) in &mut env {
            if k.ends_with("_API_KEY") {
                *v = secret.to_owned();
            }
        }
        let model = format!("{}/m", vendor.id());
        let out = run(&["chat", "-m", &model, "hi"], &env, None).await;
        let line = out.err_line();
        assert!(line.contains("the API key was rejected"), "{line}");
        assert!(line.contains("_API_KEY"), "{line}");
        assert!(!line.contains(secret), "the key leaked: {line}");
        assert_eq!(out.status.code(), Some(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_provider_lists_the_known_ones() {
    let out = run(&["chat", "-m", "nosuch/model", "hi"], &[], None).await;
    let line = out.err_line();
    assert!(line.contains("unknown provider `nosuch`"), "{line}");
    for id in ["openai", "dashscope", "dashscope-compat"] {
        assert!(line.contains(id), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_temperature_fails_before_any_request() {
    let emu = emulator(Vendor::DashScope).await;
    let env = env_for(&emu, Vendor::DashScope);
    let out = run(
        &[
            "chat",
            "-m",
            "dashscope/qwen-plus",
            "--temperature",
            "3",
            "hi",
        ],
        &env,
        None,
    )
    .await;
    let line = out.err_line();
    assert!(
        line.contains("temperature") && line.contains("between 0 and 2"),
        "{line}"
    );
    assert!(emu.requests().is_empty(), "{:#?}", emu.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flag_values_are_usage_errors() {
    let out = run(&["chat", "--extra", "no-equals", "hi"], &[], None).await;
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert!(out.stderr.contains("KEY=JSON"), "{out:#?}");
    let out = run(&["chat", "--response-format", "yaml", "hi"], &[], None).await;
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_500_is_one_line() {
    let emu = emulator(Vendor::OpenAi).await;
    let env = env_for(&emu, Vendor::OpenAi);
    emu.push_fault(llmux_emulator::Fault::always(
        llmux_emulator::FaultKind::Status {
            status: 500,
            body: None,
            retry_after: None,
        },
    ));
    let out = run(
        &["chat", "-m", "openai/gpt-4o", "hi", "--max-retries", "1"],
        &env,
        None,
    )
    .await;
    assert!(out.err_line().contains("HTTP 500"), "{out:#?}");
    assert_eq!(emu.requests().len(), 2, "one retry after the first attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_500_is_retried_and_the_answer_printed() {
    let emu = emulator(Vendor::OpenAi).await;
    let env = env_for(&emu, Vendor::OpenAi);
    emu.push_fault(llmux_emulator::Fault::once(
        llmux_emulator::FaultKind::Status {
            status: 500,
            body: None,
            retry_after: None,
        },
    ));
    let out = run(&["chat", "-m", "openai/gpt-4o", "hi"], &env, None).await;
    assert_eq!(out.ok(), "You said: hi\n");
    assert_eq!(emu.requests().len(), 2);
    let bad = run(
        &[
            "chat",
            "-m",
            "openai/gpt-4o",
            "hi",
            "--timeout",
            "5 parsecs",
        ],
        &env,
        None,
    )
    .await;
    assert_eq!(bad.status.code(), Some(2), "{bad:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_stream_error_keeps_the_partial_line_and_fails_with_one_error_line() {
    let emu = emulator(Vendor::OpenAi).await;
    let env = env_for(&emu, Vendor::OpenAi);
    emu.push_fault(llmux_emulator::Fault::once(
        llmux_emulator::FaultKind::ErrorEvent { after: 3 },
    ));
    let out = run(
        &["chat", "-m", "openai/gpt-4o", "one two three four"],
        &env,
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:#?}");
    assert!(out.stdout.starts_with("You "), "{out:#?}");
    assert!(out.stdout.ends_with('\n'), "{out:#?}");
    assert_eq!(out.stdout.lines().count(), 1, "{out:#?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{out:#?}");
    assert!(lines[0].starts_with("error: "), "{out:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_print_as_readable_lines() {
    let emu = emulator(Vendor::OpenAi).await;
    let env = env_for(&emu, Vendor::OpenAi);
    let tools = json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"]
            }
        }
    }]);
    let extra = format!("tools={tools}");
    for mode in [None, Some("--no-stream")] {
        let mut args = vec!["chat", "-m", "openai/gpt-4o", "--extra", &extra, "Paris"];
        args.extend(mode);
        let out = run(&args, &env, None).await;
        assert_eq!(
            out.ok(),
            "tool_call get_weather {\"city\":\"Paris\"}\n",
            "{mode:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_a_one_shot_answer_with_exit_130() {
    let emu = emulator(Vendor::DashScope).await;
    emu.set_latency(std::time::Duration::from_secs(600));
    let env = env_for(&emu, Vendor::DashScope);
    let home = tempfile::tempdir().unwrap();
    let child = common::command(home.path(), &env)
        .args(["chat", "-m", "dashscope/qwen-plus", "hi"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Poll the request log until the request is in flight.
    let start = tokio::time::Instant::now();
    while emu.requests().is_empty() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no request"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:#?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "[cancelled]\n");
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulate_flag_answers_offline_without_any_key() {
    for spec in llmux_core::providers::REGISTRY {
        let model = match spec.id {
            "ollama" => "llama3.2".to_owned(),
            "pangu" => "deployment-1".to_owned(),
            id => spec.models.first().copied().unwrap_or(id).to_owned(),
        };
        let addr = format!("{}/{model}", spec.id);
        let out = run(&["chat", "--emulate", "-m", &addr, "你好 llmux"], &[], None).await;
        assert_eq!(out.ok(), "You said: 你好 llmux\n", "{addr}");
    }
    let out = run(&["chat", "--emulate", "-m", "nosuch/x", "hi"], &[], None).await;
    assert!(
        out.err_line().contains("unknown provider `nosuch`"),
        "{out:#?}"
    );
}
