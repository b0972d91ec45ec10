"""Drives the llmux gateway with the official Anthropic Python SDK.

Usage: python anthropic_cases.py CASE[:MODEL]...
Environment: LLMUX_BASE_URL (the gateway root, e.g. http://127.0.0.1:PORT), LLMUX_API_KEY,
LLMUX_MODEL (default model).

Each case (a `case_*` function) returns what the SDK parsed; all results go to stdout as one
JSON object keyed by argument, which the Rust test (tests/gateway_python_sdk.rs) asserts on.
An SDK exception that a case does not expect is reported with its traceback under that case's
key, and the exit code is then 1.
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

BASE = os.environ["LLMUX_BASE_URL"].rstrip("/")
KEY = os.environ["LLMUX_API_KEY"]
DEFAULT_MODEL = os.environ.get("LLMUX_MODEL", "gpt-4o-mini")
MODEL = DEFAULT_MODEL

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client(key=KEY):
    # max_retries=0: the error cases must see the gateway's first answer, and nothing here
    # may wait on a retry timer. The SDK sends the key as `x-api-key`.
    return anthropic.Anthropic(base_url=BASE, api_key=key, max_retries=0, timeout=30.0)


def usage_of(u):
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cache_read_input_tokens": u.cache_read_input_tokens,
        "cache_creation_input_tokens": u.cache_creation_input_tokens,
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
        "class": type(m).__name__,
        "id": m.id,
        "type": m.type,
        "role": m.role,
        "model": m.model,
        "content": blocks_of(m.content),
        "stop_reason": m.stop_reason,
        "stop_sequence": m.stop_sequence,
        "usage": usage_of(m.usage),
        "request_id": getattr(m, "_request_id", None),
    }


def case_create():
    raw = client().messages.with_raw_response.create(
        model=MODEL,
        max_tokens=64,
        system="You are terse.",
        messages=[{"role": "user", "content": "hi there"}],
        # This SDK version has no sampling parameters; the Messages API still takes them.
        extra_body={"temperature": 0.2},
    )
    m = raw.parse()
    out = message_of(m)
    out["x_request_id"] = raw.headers.get("x-request-id")
    return out


def case_stream():
    """`messages.stream`: the SDK's own accumulator, plus the raw event types in order."""
    with client().messages.stream(
        model=MODEL,
        max_tokens=64,
        system=[{"type": "text", "text": "You are terse."}],
        messages=[{"role": "user", "content": "hi there"}],
    ) as s:
        events = [e.type for e in s]
        final = s.get_final_message()
        request_id = s.request_id
    # `text_stream` on a second call: the text pieces as they arrive.
    with client().messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi there"}]
    ) as s:
        pieces = list(s.text_stream)
    out = message_of(final)
    out["request_id"] = request_id
    out["events"] = events
    out["pieces"] = pieces
    return out


def tool_result_for(block):
    return json.dumps({"city": block.input.get("city"), "forecast": "sunny", "celsius": 21})


def round_trip(stream):
    """The model calls the tool, the result goes back as a tool_result, a final answer."""
    c = client()
    messages = [{"role": "user", "content": "Hangzhou"}]
    kwargs = dict(model=MODEL, max_tokens=256, tools=[WEATHER_TOOL])
    if stream:
        with c.messages.stream(messages=messages, tool_choice={"type": "auto"}, **kwargs) as s:
            events = [e.type for e in s]
            first = s.get_final_message()
    else:
        events = None
        first = c.messages.create(messages=messages, tool_choice={"type": "auto"}, **kwargs)
    uses = [b for b in first.content if b.type == "tool_use"]
    messages.append({"role": "assistant", "content": first.content})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": b.id, "content": tool_result_for(b)}
                for b in uses
            ],
        }
    )
    final = c.messages.create(messages=messages, **kwargs)
    return {
        "events": events,
        "first_stop": first.stop_reason,
        "calls": [{"id": b.id, "name": b.name, "input": b.input} for b in uses],
        "first_usage": usage_of(first.usage),
        "final_stop": final.stop_reason,
        "final_content": blocks_of(final.content),
        "usage": usage_of(final.usage),
    }


def case_tools():
    return round_trip(stream=False)


def case_tools_stream():
    return round_trip(stream=True)


def case_count_tokens():
    c = client()
    n = c.messages.count_tokens(
        model=MODEL,
        system="You are terse.",
        messages=[{"role": "user", "content": "hi there"}],
    )
    with_tools = c.messages.count_tokens(
        model=MODEL,
        messages=[{"role": "user", "content": "hi there"}],
        tools=[WEATHER_TOOL],
    )
    return {
        "class": type(n).__name__,
        "input_tokens": n.input_tokens,
        "with_tools": with_tools.input_tokens,
    }


def status_error(e):
    return {
        "class": type(e).__name__,
        "status_code": e.status_code,
        "type": e.type,
        "message": e.api_message,
        "body": e.body,
        "request_id": e.request_id,
        "retry_after": e.response.headers.get("retry-after"),
    }


def expect_status_error(call):
    try:
        call()
    except anthropic.APIStatusError as e:
        return status_error(e)
    return {"class": None}


def case_create_error():
    """A create call that must fail, whole and streamed: what the SDK raised."""
    messages = [{"role": "user", "content": "hi"}]
    out = expect_status_error(
        lambda: client().messages.create(model=MODEL, max_tokens=16, messages=messages)
    )

    def streamed():
        with client().messages.stream(model=MODEL, max_tokens=16, messages=messages) as s:
            s.until_done()

    out["stream"] = expect_status_error(streamed)
    out["count_tokens"] = expect_status_error(
        lambda: client().messages.count_tokens(model=MODEL, messages=messages)
    )
    return out


def case_unsupported():
    """A server tool cannot be carried to another vendor: a 400 naming it."""
    return expect_status_error(
        lambda: client().messages.create(
            model=MODEL,
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
    )


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    # Every argument is `CASE` or `CASE:MODEL`. One JSON object maps each argument to its
    # result; a case that raised maps to its exception and traceback, and the exit code is 1.
    results = {}
    for arg in sys.argv[1:]:
        name, _, model = arg.partition(":")
        MODEL = model or DEFAULT_MODEL
        try:
            result = CASES[name]()
            result["sdk_version"] = anthropic.__version__
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
