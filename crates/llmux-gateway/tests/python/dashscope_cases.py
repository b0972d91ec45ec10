"""Drives the llmux gateway's DashScope ingress with the official dashscope Python SDK.

Usage: python dashscope_cases.py CASE[:MODEL]...
Environment: LLMUX_BASE_URL (the gateway root, e.g. http://127.0.0.1:PORT), LLMUX_API_KEY,
LLMUX_MODEL (default chat model), LLMUX_EMBED_MODEL (default embeddings model).

Each case (a `case_*` function) returns what the SDK returned (the SDK reports HTTP errors as
results with a status code, not as exceptions); all results go to stdout as one JSON object
keyed by argument, which the Rust test (tests/gateway_python_sdk.rs) asserts on. An exception
is reported with its traceback under that case's key, and the exit code is then 1.
"""

import json
import os
import sys
import traceback

ROOT = os.environ["LLMUX_BASE_URL"].rstrip("/")
# Every base URL the SDK knows points at the gateway, so nothing can leave loopback.
os.environ["DASHSCOPE_HTTP_BASE_URL"] = ROOT + "/api/v1"
os.environ["DASHSCOPE_WEBSOCKET_BASE_URL"] = ROOT.replace("http", "ws", 1) + "/api-ws/v1/inference"
os.environ["DASHSCOPE_COMPATIBLE_BASE_URL"] = ROOT + "/compatible-mode/v1"

try:
    import dashscope
    from dashscope import Generation, TextEmbedding
except ImportError as e:  # exit 3: the SDK is not installed (the Rust test reports it)
    sys.stderr.write(f"missing SDK: {e}\n")
    sys.exit(3)

dashscope.base_http_api_url = ROOT + "/api/v1"

KEY = os.environ["LLMUX_API_KEY"]
DEFAULT_MODEL = os.environ.get("LLMUX_MODEL", "qwen-plus")
DEFAULT_EMBED_MODEL = os.environ.get("LLMUX_EMBED_MODEL", "text-embedding-v3")
MODEL = DEFAULT_MODEL
EMBED_MODEL = DEFAULT_EMBED_MODEL

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def plain(x):
    """The SDK's dict-like objects as plain JSON values."""
    return json.loads(json.dumps(x, ensure_ascii=False, default=str))


def summary(r):
    return {
        "status_code": r.status_code,
        "request_id": r.request_id,
        "code": r.code,
        "message": r.message,
        "output": plain(r.output),
        "usage": plain(r.usage),
    }


def case_messages():
    r = Generation.call(
        model=MODEL,
        api_key=KEY,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi there"},
        ],
        result_format="message",
        temperature=0.2,
        max_tokens=64,
        seed=1234,
    )
    out = summary(r)
    if r.status_code == 200:
        choice = r.output.choices[0]
        out["content"] = choice.message.content
        out["role"] = choice.message.role
        out["finish_reason"] = choice.finish_reason
    return out


def case_prompt():
    r = Generation.call(model=MODEL, api_key=KEY, prompt="hi there")
    out = summary(r)
    if r.status_code == 200:
        out["text"] = r.output.text
        out["finish_reason"] = r.output.finish_reason
    return out


def stream_summary(responses, pick):
    return {
        "n": len(responses),
        "status_codes": sorted({r.status_code for r in responses}),
        "request_ids": sorted({r.request_id for r in responses}),
        "pieces": [pick(r) for r in responses],
        "finish_reasons": [
            (r.output.choices[0].finish_reason if r.output.choices else r.output.finish_reason)
            for r in responses
        ],
        "output_tokens": [r.usage.output_tokens for r in responses],
        "usage_adds_up": [
            r.usage.input_tokens + r.usage.output_tokens == r.usage.total_tokens for r in responses
        ],
        "last_usage": plain(responses[-1].usage),
    }


def case_stream_incremental():
    responses = list(
        Generation.call(
            model=MODEL,
            api_key=KEY,
            messages=[{"role": "user", "content": "hi there"}],
            result_format="message",
            stream=True,
            incremental_output=True,
        )
    )
    return stream_summary(responses, lambda r: r.output.choices[0].message.content)


def case_stream_cumulative():
    # No incremental_output: the SDK sends none, so the server must repeat the text so far.
    responses = list(
        Generation.call(model=MODEL, api_key=KEY, prompt="hi there", stream=True)
    )
    return stream_summary(responses, lambda r: r.output.text)


def case_stream_merged():
    # incremental_output=False: the SDK asks for incremental frames and accumulates them itself.
    responses = list(
        Generation.call(
            model=MODEL,
            api_key=KEY,
            messages=[{"role": "user", "content": "hi there"}],
            result_format="message",
            stream=True,
            incremental_output=False,
        )
    )
    return stream_summary(responses, lambda r: r.output.choices[0].message.content)


def tool_result_for(call):
    args = json.loads(call["function"]["arguments"])
    return json.dumps({"city": args.get("city"), "forecast": "sunny", "celsius": 21})


def case_tools():
    """Round trip: a tool call, the tool's result sent back, a final answer."""
    messages = [{"role": "user", "content": "Hangzhou"}]
    first = Generation.call(
        model=MODEL,
        api_key=KEY,
        messages=messages,
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        result_format="message",
    )
    assert first.status_code == 200, summary(first)
    choice = first.output.choices[0]
    calls = plain(choice.message.get("tool_calls") or [])
    messages.append(plain(choice.message))
    for call in calls:
        messages.append(
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "name": call["function"]["name"],
                "content": tool_result_for(call),
            }
        )
    final = Generation.call(
        model=MODEL, api_key=KEY, messages=messages, tools=[WEATHER_TOOL], result_format="message"
    )
    assert final.status_code == 200, summary(final)
    return {
        "first_finish": choice.finish_reason,
        "calls": [
            {
                "id": c["id"],
                "type": c.get("type"),
                "name": c["function"]["name"],
                "arguments": json.loads(c["function"]["arguments"]),
            }
            for c in calls
        ],
        "final_finish": final.output.choices[0].finish_reason,
        "final_content": final.output.choices[0].message.content,
        "usage": plain(final.usage),
    }


def case_tools_stream():
    """Streamed, incremental tool call: fragments concatenated by index."""
    responses = list(
        Generation.call(
            model=MODEL,
            api_key=KEY,
            messages=[{"role": "user", "content": "Hangzhou"}],
            tools=[WEATHER_TOOL],
            result_format="message",
            stream=True,
            incremental_output=True,
        )
    )
    calls = {}
    for r in responses:
        assert r.status_code == 200, summary(r)
        for tc in r.output.choices[0].message.get("tool_calls") or []:
            slot = calls.setdefault(tc.get("index", 0), {"id": "", "name": "", "arguments": ""})
            slot["id"] = slot["id"] or tc.get("id") or ""
            fn = tc.get("function") or {}
            slot["name"] = slot["name"] or fn.get("name") or ""
            slot["arguments"] += fn.get("arguments") or ""
    return {
        "n": len(responses),
        "finish_reasons": [r.output.choices[0].finish_reason for r in responses],
        "calls": [
            {"index": i, "id": c["id"], "name": c["name"], "arguments": json.loads(c["arguments"])}
            for i, c in sorted(calls.items())
        ],
    }


def case_embedding():
    r = TextEmbedding.call(
        model=EMBED_MODEL,
        api_key=KEY,
        input=["hello world", "你好"],
        dimension=512,
        text_type="document",
    )
    out = summary(r)
    if r.status_code == 200:
        embs = r.output["embeddings"]
        out["output"] = None
        out["text_indexes"] = [e["text_index"] for e in embs]
        out["dims"] = [len(e["embedding"]) for e in embs]
        out["vectors_differ"] = embs[0]["embedding"] != embs[1]["embedding"]
    return out


def case_chat_error():
    """A call that must fail: the SDK returns (not raises) the error; non-stream and stream."""
    r = Generation.call(model=MODEL, api_key=KEY, prompt="hi", result_format="message")
    out = summary(r)
    stream = list(
        Generation.call(
            model=MODEL, api_key=KEY, prompt="hi", stream=True, incremental_output=True
        )
    )
    out["stream"] = [summary(s) for s in stream]
    return out


def case_embedding_error():
    return summary(TextEmbedding.call(model=EMBED_MODEL, api_key=KEY, input=["hi"]))


def case_burst():
    """Calls until the first non-200 (at most 10): how many passed, and the error."""
    ok = 0
    for _ in range(10):
        r = Generation.call(model=MODEL, api_key=KEY, prompt="hi")
        if r.status_code != 200:
            return {"ok": ok, "error": summary(r)}
        ok += 1
    return {"ok": ok, "error": None}


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    # Every argument is `CASE` or `CASE:MODEL` (MODEL then replaces both LLMUX_MODEL and
    # LLMUX_EMBED_MODEL for that case). One JSON object maps each argument to its result; a
    # case that raised maps to its exception and traceback, and the exit code is then 1.
    results = {}
    for arg in sys.argv[1:]:
        name, _, model = arg.partition(":")
        MODEL = model or DEFAULT_MODEL
        EMBED_MODEL = model or DEFAULT_EMBED_MODEL
        try:
            result = CASES[name]()
            result["sdk_version"] = dashscope.__version__
        except Exception as e:  # reported per case; the other cases still run
            result = {
                "exception": type(e).__name__,
                "message": str(e),
                "traceback": traceback.format_exc(),
            }
        results[arg] = result
    json.dump(results, sys.stdout, ensure_ascii=False, default=str)
    sys.stdout.write("\n")
    sys.exit(1 if any("exception" in r for r in results.values()) else 0)
