"""Drives the llmux gateway's Gemini ingress with the official google-genai Python SDK.

Usage: python gemini_cases.py CASE[:MODEL]...
Environment: LLMUX_BASE_URL (the gateway root, e.g. http://127.0.0.1:PORT), LLMUX_API_KEY
(sent as `x-goog-api-key`, the SDK's way), LLMUX_MODEL (default model).

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
    from google import genai
    from google.genai import errors, types
except ImportError as e:  # exit 3: the SDK is not installed (the Rust test reports it)
    sys.stderr.write(f"missing SDK: {e}\n")
    sys.exit(3)

BASE = os.environ["LLMUX_BASE_URL"].rstrip("/")
KEY = os.environ["LLMUX_API_KEY"]
DEFAULT_MODEL = os.environ.get("LLMUX_MODEL", "gemini-2.5-flash")
MODEL = DEFAULT_MODEL

WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            description="Get the weather for a city",
            parameters=types.Schema(
                type="OBJECT",
                properties={"city": types.Schema(type="STRING")},
                required=["city"],
            ),
        )
    ]
)
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)


CLIENTS = {}


def client(key=KEY):
    # The gateway serves the v1beta paths (the SDK's default is v1); no retries, so the error
    # cases see the gateway's first answer. Clients are kept: one closes its connections when
    # it is garbage-collected, even while a `models` object taken from it is still in use.
    if key not in CLIENTS:
        CLIENTS[key] = genai.Client(
            api_key=key,
            http_options=types.HttpOptions(base_url=BASE, api_version="v1beta", timeout=30_000),
        )
    return CLIENTS[key]


def usage_of(u):
    if u is None:
        return None
    return {
        "prompt_token_count": u.prompt_token_count,
        "candidates_token_count": u.candidates_token_count,
        "total_token_count": u.total_token_count,
        "cached_content_token_count": u.cached_content_token_count,
        "thoughts_token_count": u.thoughts_token_count,
    }


def calls_of(r):
    return [
        {"id": fc.id, "name": fc.name, "args": fc.args} for fc in (r.function_calls or [])
    ]


def case_generate():
    r = client().models.generate_content(
        model=MODEL,
        contents="hi there",
        config=types.GenerateContentConfig(
            # No max_output_tokens: Hunyuan's native API has no output cap (the gateway
            # refuses one).
            system_instruction="You are terse.", temperature=0.2
        ),
    )
    c = r.candidates[0]
    return {
        "type": type(r).__name__,
        "text": r.text,
        "role": c.content.role,
        "finish_reason": c.finish_reason.value if c.finish_reason else None,
        "index": c.index,
        "model_version": r.model_version,
        "response_id": r.response_id,
        "usage": usage_of(r.usage_metadata),
        "request_id": r.sdk_http_response.headers.get("x-request-id"),
    }


def case_stream():
    chunks = list(
        client().models.generate_content_stream(
            model=MODEL, contents=[types.Content(role="user", parts=[types.Part(text="hi there")])]
        )
    )
    finish = [
        c.candidates[0].finish_reason.value
        for c in chunks
        if c.candidates and c.candidates[0].finish_reason
    ]
    with_usage = [c for c in chunks if c.usage_metadata is not None]
    return {
        "n": len(chunks),
        "pieces": [
            "".join(p.text or "" for p in (c.candidates[0].content.parts or []))
            for c in chunks
            if c.candidates and c.candidates[0].content
        ],
        "finish_reasons": finish,
        "usage_chunks": len(with_usage),
        "usage_on_last": bool(with_usage) and with_usage[-1] is chunks[-1],
        "usage": usage_of(chunks[-1].usage_metadata),
        "response_ids": sorted({c.response_id for c in chunks}),
    }


def weather_response(fc):
    return {"city": fc.args.get("city"), "forecast": "sunny", "celsius": 21}


def round_trip(stream):
    """A function call, its response sent back, a final answer; whole or streamed."""
    c = client()
    config = types.GenerateContentConfig(tools=[WEATHER], automatic_function_calling=NO_AFC)
    contents = [types.Content(role="user", parts=[types.Part(text="Hangzhou")])]
    if stream:
        chunks = list(c.models.generate_content_stream(model=MODEL, contents=contents, config=config))
        calls = [fc for ch in chunks for fc in (ch.function_calls or [])]
        model_turn = types.Content(role="model", parts=[types.Part(function_call=fc) for fc in calls])
        first_finish = chunks[-1].candidates[0].finish_reason.value
        first_usage = usage_of(chunks[-1].usage_metadata)
    else:
        first = c.models.generate_content(model=MODEL, contents=contents, config=config)
        calls = first.function_calls or []
        model_turn = first.candidates[0].content
        first_finish = first.candidates[0].finish_reason.value
        first_usage = usage_of(first.usage_metadata)
    contents.append(model_turn)
    # No ids in the responses: the gateway pairs them with the calls by name.
    contents.append(
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(name=fc.name, response=weather_response(fc))
                for fc in calls
            ],
        )
    )
    if stream:
        final_chunks = list(c.models.generate_content_stream(model=MODEL, contents=contents, config=config))
        final_text = "".join(ch.text or "" for ch in final_chunks)
        final_finish = final_chunks[-1].candidates[0].finish_reason.value
    else:
        final = c.models.generate_content(model=MODEL, contents=contents, config=config)
        final_text = final.text
        final_finish = final.candidates[0].finish_reason.value
    return {
        "calls": [{"id": fc.id, "name": fc.name, "args": fc.args} for fc in calls],
        "first_finish": first_finish,
        "first_usage": first_usage,
        "final_text": final_text,
        "final_finish": final_finish,
    }


def case_tools():
    return round_trip(stream=False)


def case_tools_stream():
    return round_trip(stream=True)


def case_count_tokens():
    r = client().models.count_tokens(model=MODEL, contents="hi there")
    return {"total_tokens": r.total_tokens}


def api_error(e):
    return {
        "class": type(e).__name__,
        "code": e.code,
        "status": e.status,
        "message": e.message,
    }


def expect_error(call):
    try:
        call()
    except errors.APIError as e:
        return api_error(e)
    return {"class": None}


def case_generate_error():
    """A call that must fail (401, 403, 429 cases), whole and streamed."""
    out = expect_error(lambda: client().models.generate_content(model=MODEL, contents="hi"))
    out["stream"] = expect_error(
        lambda: list(client().models.generate_content_stream(model=MODEL, contents="hi"))
    )
    return out


def case_refusals():
    """What the gateway refuses, as the SDK raises it."""
    c = client()
    return {
        "cached_content": expect_error(
            lambda: c.models.generate_content(
                model=MODEL,
                contents="hi",
                config=types.GenerateContentConfig(cached_content="cachedContents/abc"),
            )
        ),
        "google_search": expect_error(
            lambda: c.models.generate_content(
                model=MODEL,
                contents="hi",
                config=types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())]),
            )
        ),
    }


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
            result["sdk_version"] = genai.__version__
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
