"""Drives the Anthropic emulator with the official `anthropic` Python SDK.

Usage: python anthropic_cases.py CASE...
Environment: LLMUX_BASE_URL (the emulator's base URL, without /v1), LLMUX_API_KEY.

Each case (a `case_*` function) returns what the SDK parsed; all results go to stdout as one JSON
object keyed by case, which the Rust test (tests/anthropic_sdk.rs) asserts on. An exception a case
does not expect is reported with its traceback under that case's key, and the exit code is then 1.
"""

import json
import os
import sys
import traceback

try:
    import anthropic
except ImportError as e:  # exit 3: the SDK is not installed (the Rust test reports it)
    sys.stderr.write(f"missing SDK: {e}\n")
    sys.exit(3)

BASE = os.environ["LLMUX_BASE_URL"]
KEY = os.environ["LLMUX_API_KEY"]
MODEL = "claude-sonnet-4-6"

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
}


def client(key=KEY):
    # max_retries=0: the error case must see the emulator's first answer.
    return anthropic.Anthropic(base_url=BASE, api_key=key, max_retries=0, timeout=30.0)


def usage_of(u):
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
        "cache_read_input_tokens": u.cache_read_input_tokens,
    }


def blocks_of(content):
    out = []
    for b in content:
        if b.type == "text":
            out.append({"type": "text", "text": b.text})
        elif b.type == "tool_use":
            out.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.input})
        elif b.type == "thinking":
            out.append({"type": "thinking", "thinking": b.thinking, "signature": b.signature})
        else:
            out.append({"type": b.type})
    return out


def message_of(m):
    return {
        "type": type(m).__name__,
        "id": m.id,
        "role": m.role,
        "model": m.model,
        "content": blocks_of(m.content),
        "stop_reason": m.stop_reason,
        "stop_sequence": m.stop_sequence,
        "usage": usage_of(m.usage),
    }


def case_create():
    raw = client().messages.with_raw_response.create(
        model=MODEL,
        max_tokens=64,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "hi there"}],
        metadata={"user_id": "u-1"},
    )
    m = raw.parse()
    out = message_of(m)
    out["request_id"] = raw.headers.get("request-id")
    out["sdk_request_id"] = m._request_id
    return out


def case_stop_sequence():
    m = client().messages.create(
        model=MODEL,
        max_tokens=64,
        stop_sequences=["there"],
        cache_control={"type": "ephemeral", "ttl": "1h"},
        messages=[{"role": "user", "content": "hi there friend"}],
    )
    return message_of(m)


def case_stream_text():
    events = []
    with client().messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "stream me please"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    with client().messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
    ) as raw_stream:
        for event in raw_stream:
            events.append(event.type)
    return {"text": text, "final": message_of(final), "events": events}


def case_stream_tools():
    json_deltas = []
    with client().messages.stream(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Paris"}],
    ) as stream:
        for event in stream:
            if event.type == "input_json":
                json_deltas.append(event.partial_json)
        final = stream.get_final_message()
    return {"json_deltas": json_deltas, "final": message_of(final)}


def case_stream_thinking():
    thinking_deltas = []
    signatures = []
    with client().messages.stream(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think about this"}],
    ) as stream:
        for event in stream:
            if event.type == "thinking":
                thinking_deltas.append(event.thinking)
            elif event.type == "signature":
                signatures.append(event.signature)
        final = stream.get_final_message()
    return {"thinking_deltas": thinking_deltas, "signatures": signatures, "final": message_of(final)}


def case_tool_round_trip():
    c = client()
    messages = [{"role": "user", "content": "Paris"}]
    first = c.messages.create(
        model=MODEL, max_tokens=2048, tools=[WEATHER_TOOL], thinking={"type": "enabled", "budget_tokens": 1024},
        messages=messages,
    )
    calls = [b for b in first.content if b.type == "tool_use"]
    messages.append({"role": "assistant", "content": first.content})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": b.id, "content": "sunny, 21 C"} for b in calls
            ],
        }
    )
    second = c.messages.create(
        model=MODEL, max_tokens=2048, tools=[WEATHER_TOOL], thinking={"type": "enabled", "budget_tokens": 1024},
        messages=messages,
    )
    # A thinking block whose signature was tampered with is refused.
    tampered = [dict(b.to_dict()) for b in first.content]
    for b in tampered:
        if b["type"] == "thinking":
            b["signature"] = "AAAA" + b["signature"][4:]
    try:
        c.messages.create(
            model=MODEL, max_tokens=2048, tools=[WEATHER_TOOL],
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[messages[0], {"role": "assistant", "content": tampered}, messages[2]],
        )
        bad_signature = None
    except anthropic.BadRequestError as e:
        bad_signature = {"status": e.status_code, "type": e.body["error"]["type"], "message": e.message}
    return {"first": message_of(first), "second": message_of(second), "bad_signature": bad_signature}


def case_count_tokens():
    r = client().messages.count_tokens(
        model=MODEL,
        system="You are terse.",
        messages=[{"role": "user", "content": "hi there"}],
        tools=[WEATHER_TOOL],
    )
    return {"type": type(r).__name__, "input_tokens": r.input_tokens}


def case_models():
    page = client().models.list()
    return {"ids": [m.id for m in page.data], "types": sorted({m.type for m in page.data})}


def case_auth_error():
    try:
        client("sk-ant-wrong").messages.create(
            model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
        return {"raised": None}
    except anthropic.AuthenticationError as e:
        return {
            "raised": type(e).__name__,
            "status": e.status_code,
            "type": e.body["error"]["type"],
            "message": e.body["error"]["message"],
            "request_id": e.request_id,
        }


def case_invalid_request():
    try:
        client().messages.create(model=MODEL, max_tokens=16, messages=[{"role": "system", "content": "hi"}])
        return {"raised": None}
    except anthropic.BadRequestError as e:
        return {"raised": type(e).__name__, "status": e.status_code, "message": e.body["error"]["message"]}


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    results = {}
    for name in sys.argv[1:]:
        try:
            result = CASES[name]()
            result["sdk_version"] = anthropic.__version__
        except Exception as e:  # reported per case; the other cases still run
            result = {"exception": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}
        results[name] = result
    json.dump(results, sys.stdout, ensure_ascii=False, default=str)
    sys.stdout.write("\n")
    sys.exit(1 if any("exception" in r for r in results.values()) else 0)
