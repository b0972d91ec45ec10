"""Drives the llmux gateway with the official OpenAI Python SDK.

Usage: python openai_cases.py CASE[:MODEL]...
Environment: LLMUX_BASE_URL (the gateway root, e.g. http://127.0.0.1:PORT), LLMUX_API_KEY,
LLMUX_MODEL (default chat model), LLMUX_EMBED_MODEL (default embeddings model).

Each case (a `case_*` function) returns what the SDK parsed; all results go to stdout as one
JSON object keyed by argument, which the Rust test (tests/gateway_python_sdk.rs) asserts on.
Several cases share one run because starting Python and importing the SDK costs more than the
cases themselves. An SDK exception that a case does not expect is reported with its traceback
under that case's key, and the exit code is then 1.
"""

import json
import math
import os
import sys
import traceback

try:
    import openai
except ImportError as e:  # exit 3: the SDK is not installed (the Rust test reports it)
    sys.stderr.write(f"missing SDK: {e}\n")
    sys.exit(3)

BASE = os.environ["LLMUX_BASE_URL"].rstrip("/") + "/v1"
KEY = os.environ["LLMUX_API_KEY"]
DEFAULT_MODEL = os.environ.get("LLMUX_MODEL", "gpt-4o-mini")
DEFAULT_EMBED_MODEL = os.environ.get("LLMUX_EMBED_MODEL", "text-embedding-3-small")
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


def client(key=KEY):
    # max_retries=0: the error cases must see the gateway's first answer, and nothing here
    # may wait on a retry timer.
    return openai.OpenAI(base_url=BASE, api_key=key, max_retries=0, timeout=30.0)


def usage_of(u):
    if u is None:
        return None
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def case_chat():
    raw = client().chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hi there"},
        ],
        temperature=0.2,
        max_tokens=64,
    )
    c = raw.parse()
    choice = c.choices[0]
    return {
        "type": type(c).__name__,
        "id": c.id,
        "object": c.object,
        "model": c.model,
        "created": c.created,
        "n_choices": len(c.choices),
        "index": choice.index,
        "role": choice.message.role,
        "content": choice.message.content,
        "tool_calls": choice.message.tool_calls,
        "finish_reason": choice.finish_reason,
        "usage": usage_of(c.usage),
        "request_id": raw.headers.get("x-request-id"),
        "sdk_request_id": c._request_id,
    }


def case_stream_usage():
    stream = client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi there"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = "".join(
        ch.choices[0].delta.content or "" for ch in chunks if ch.choices
    )
    usage_chunks = [ch for ch in chunks if ch.usage is not None]
    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    return {
        "n_chunks": len(chunks),
        "objects": sorted({ch.object for ch in chunks}),
        "ids": sorted({ch.id for ch in chunks}),
        "models": sorted({ch.model for ch in chunks}),
        "first_role": chunks[0].choices[0].delta.role if chunks and chunks[0].choices else None,
        "content": content,
        "finish_reasons": finish,
        "usage_chunks": len(usage_chunks),
        "usage_chunk_is_last": bool(usage_chunks) and usage_chunks[-1] is chunks[-1],
        "usage_chunk_choices": [len(ch.choices) for ch in usage_chunks],
        "usage": usage_of(usage_chunks[-1].usage) if usage_chunks else None,
    }


def tool_result_for(call):
    args = json.loads(call.function.arguments)
    return json.dumps({"city": args.get("city"), "forecast": "sunny", "celsius": 21})


def case_tools():
    """Non-stream round trip: the model calls a tool, the result goes back, a final answer."""
    c = client()
    messages = [{"role": "user", "content": "Hangzhou"}]
    first = c.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    msg = first.choices[0].message
    calls = msg.tool_calls or []
    messages.append(msg.model_dump(exclude_none=True))
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": tool_result_for(call)})
    final = c.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    return {
        "first_finish": first.choices[0].finish_reason,
        "first_content": msg.content,
        "calls": [
            {
                "id": t.id,
                "type": t.type,
                "name": t.function.name,
                "arguments": json.loads(t.function.arguments),
            }
            for t in calls
        ],
        "final_finish": final.choices[0].finish_reason,
        "final_content": final.choices[0].message.content,
        "final_tool_calls": final.choices[0].message.tool_calls,
        "usage": usage_of(final.usage),
    }


def case_tools_stream():
    """Streamed round trip through the SDK's own accumulator (`chat.completions.stream`)."""
    c = client()
    messages = [{"role": "user", "content": "Hangzhou"}]
    with c.chat.completions.stream(
        model=MODEL,
        messages=messages,
        tools=[WEATHER_TOOL],
        stream_options={"include_usage": True},
    ) as s:
        events = [e.type for e in s]
        first = s.get_final_completion()
    msg = first.choices[0].message
    calls = msg.tool_calls or []
    messages.append(
        {
            "role": "assistant",
            "content": msg.content,
            "tool_calls": [
                {
                    "id": t.id,
                    "type": "function",
                    "function": {"name": t.function.name, "arguments": t.function.arguments},
                }
                for t in calls
            ],
        }
    )
    for call in calls:
        messages.append({"role": "tool", "tool_call_id": call.id, "content": tool_result_for(call)})
    with c.chat.completions.stream(model=MODEL, messages=messages, tools=[WEATHER_TOOL]) as s:
        final = s.get_final_completion()
    return {
        "events": sorted(set(events)),
        "first_finish": first.choices[0].finish_reason,
        "calls": [
            {"id": t.id, "name": t.function.name, "arguments": json.loads(t.function.arguments)}
            for t in calls
        ],
        "first_usage": usage_of(first.usage),
        "final_finish": final.choices[0].finish_reason,
        "final_content": final.choices[0].message.content,
    }


def case_embeddings():
    """Default (the SDK asks for base64 and decodes it) and float must give the same vectors."""
    c = client()
    inputs = ["hello world", "你好"]
    raw = c.embeddings.with_raw_response.create(model=EMBED_MODEL, input=inputs)
    wire = raw.http_response.json()
    default = raw.parse()
    flt = c.embeddings.create(model=EMBED_MODEL, input=inputs, encoding_format="float")
    diffs = [
        max(abs(a - b) for a, b in zip(d.embedding, f.embedding))
        for d, f in zip(default.data, flt.data)
    ]
    return {
        "wire_embedding_types": [type(d["embedding"]).__name__ for d in wire["data"]],
        "object": default.object,
        "model": default.model,
        "n": len(default.data),
        "indexes": [d.index for d in default.data],
        "float_indexes": [d.index for d in flt.data],
        "dims": [len(d.embedding) for d in default.data],
        "float_dims": [len(d.embedding) for d in flt.data],
        "norms": [math.sqrt(sum(x * x for x in d.embedding)) for d in default.data],
        "max_abs_diff": max(diffs),
        "vectors_differ": default.data[0].embedding != default.data[1].embedding,
        "usage": {"prompt_tokens": default.usage.prompt_tokens, "total_tokens": default.usage.total_tokens},
    }


def case_models():
    c = client()
    page = c.models.list()
    models = list(page)
    one = c.models.retrieve(MODEL)
    return {
        "ids": [m.id for m in models],
        "objects": sorted({m.object for m in models}),
        "owned_by": sorted({m.owned_by for m in models}),
        "created_ints": all(isinstance(m.created, int) for m in models),
        "retrieved": {"id": one.id, "object": one.object},
    }


def case_completion():
    """Legacy completions: a whole answer (`max_tokens` left to its default of 16)."""
    raw = client().completions.with_raw_response.create(model=MODEL, prompt="hi there")
    c = raw.parse()
    choice = c.choices[0]
    return {
        "type": type(c).__name__,
        "id": c.id,
        "object": c.object,
        "model": c.model,
        "n_choices": len(c.choices),
        "index": choice.index,
        "text": choice.text,
        "finish_reason": choice.finish_reason,
        "logprobs": choice.logprobs,
        "usage": usage_of(c.usage),
        "request_id": raw.headers.get("x-request-id"),
    }


def case_completion_stream():
    """Legacy completions streamed, with the usage chunk; then a 400 for `echo`."""
    stream = client().completions.create(
        model=MODEL,
        prompt=["hi there"],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage_chunks = [ch for ch in chunks if ch.usage is not None]
    return {
        "objects": sorted({ch.object for ch in chunks}),
        "ids": sorted({ch.id for ch in chunks}),
        "text": "".join(ch.choices[0].text for ch in chunks if ch.choices),
        "pieces": [ch.choices[0].text for ch in chunks if ch.choices and ch.choices[0].text],
        "finish_reasons": [
            ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason
        ],
        "usage_chunks": len(usage_chunks),
        "usage_chunk_is_last": bool(usage_chunks) and usage_chunks[-1] is chunks[-1],
        "usage": usage_of(usage_chunks[-1].usage) if usage_chunks else None,
        "echo_error": expect_status_error(
            lambda: client().completions.create(model=MODEL, prompt="hi", echo=True)
        ),
    }


def status_error(e):
    resp = e.response
    return {
        "class": type(e).__name__,
        "status_code": e.status_code,
        "code": e.code,
        "type": e.type,
        "param": e.param,
        "message": e.message,
        "body": e.body,
        "retry_after": resp.headers.get("retry-after"),
        "retry_after_ms": resp.headers.get("retry-after-ms"),
        "request_id": e.request_id,
        "is_rate_limit": isinstance(e, openai.RateLimitError),
        "is_auth": isinstance(e, openai.AuthenticationError),
        "is_permission": isinstance(e, openai.PermissionDeniedError),
        "is_not_found": isinstance(e, openai.NotFoundError),
    }


def expect_status_error(call):
    try:
        call()
    except openai.APIStatusError as e:
        return status_error(e)
    return {"class": None}


def case_chat_error():
    """A chat call that must fail: what the SDK raised (401, 403, 429 cases)."""
    out = expect_status_error(
        lambda: client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    )
    out["stream"] = expect_status_error(
        lambda: list(
            client().chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    )
    return out


def case_embeddings_error():
    return expect_status_error(lambda: client().embeddings.create(model=EMBED_MODEL, input="hi"))


def case_models_error():
    return expect_status_error(lambda: client().models.list())


def case_burst():
    """Chat calls until the first error (at most 10): how many passed, and the error."""
    c = client()
    ok = 0
    for _ in range(10):
        try:
            c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
            ok += 1
        except openai.APIStatusError as e:
            return {"ok": ok, "error": status_error(e)}
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
            result["sdk_version"] = openai.__version__
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
