"""Drives the Gemini emulator with the official `google-genai` Python SDK.

Usage: python gemini_cases.py CASE...
Environment: LLMUX_BASE_URL (the emulator's base URL, without an API version), LLMUX_API_KEY.

Each case (a `case_*` function) returns what the SDK parsed; all results go to stdout as one JSON
object keyed by case, which the Rust test (tests/gemini.rs) asserts on. An exception a case does
not expect is reported with its traceback under that case's key, and the exit code is then 1.
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

BASE = os.environ["LLMUX_BASE_URL"]
KEY = os.environ["LLMUX_API_KEY"]
MODEL = "gemini-2.5-flash"

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Get the weather for a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
)


# A genai.Client closes its HTTP client when it is collected, so every client made here is kept alive
# until the run ends (`client().models.…` would otherwise use a closed client).
_CLIENTS = []


def client(key=KEY, api_version=None):
    options = types.HttpOptions(base_url=BASE, timeout=30_000)
    if api_version:
        options.api_version = api_version
    c = genai.Client(api_key=key, http_options=options)
    _CLIENTS.append(c)
    return c


def usage_of(u):
    return {
        "prompt_token_count": u.prompt_token_count,
        "candidates_token_count": u.candidates_token_count,
        "thoughts_token_count": u.thoughts_token_count,
        "cached_content_token_count": u.cached_content_token_count,
        "total_token_count": u.total_token_count,
    }


def parts_of(content):
    out = []
    for p in content.parts or []:
        if p.function_call is not None:
            out.append({"function_call": {"name": p.function_call.name, "args": p.function_call.args},
                        "thought_signature": p.thought_signature is not None})
        else:
            out.append({"text": p.text, "thought": bool(p.thought)})
    return out


def case_generate():
    r = client().models.generate_content(
        model=MODEL,
        contents="hi there",
        config=types.GenerateContentConfig(
            system_instruction="You are terse.", temperature=0.5, max_output_tokens=64, candidate_count=1
        ),
    )
    c = r.candidates[0]
    return {
        "text": r.text,
        "finish_reason": c.finish_reason.value if c.finish_reason else None,
        "role": c.content.role,
        "usage": usage_of(r.usage_metadata),
        "model_version": r.model_version,
        "response_id": r.response_id,
    }


def case_generate_stream():
    chunks = list(
        client(api_version="v1beta").models.generate_content_stream(
            model=MODEL,
            contents=[types.Content(role="user", parts=[types.Part(text="stream me please")])],
            config={"stop_sequences": ["please"]},
        )
    )
    finishes = [
        ch.candidates[0].finish_reason.value
        for ch in chunks
        if ch.candidates and ch.candidates[0].finish_reason
    ]
    return {
        "n_chunks": len(chunks),
        "text": "".join(ch.text or "" for ch in chunks),
        "finish_reasons": finishes,
        "last_usage": usage_of(chunks[-1].usage_metadata),
    }


def case_function_call():
    c = client()
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(mode="ANY", allowed_function_names=["get_weather"])
        ),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    contents = [types.Content(role="user", parts=[types.Part(text="Paris")])]
    first = c.models.generate_content(model=MODEL, contents=contents, config=config)
    calls = first.function_calls or []
    contents.append(first.candidates[0].content)
    contents.append(
        types.Content(
            role="user",
            parts=[types.Part.from_function_response(name=fc.name, response={"result": "sunny"}) for fc in calls],
        )
    )
    second = c.models.generate_content(model=MODEL, contents=contents, config=config)
    return {
        "calls": [{"name": fc.name, "args": fc.args, "id": fc.id} for fc in calls],
        "first_finish": first.candidates[0].finish_reason.value,
        "second_text": second.text,
    }


def case_stream_function_call():
    chunks = list(
        client().models.generate_content_stream(
            model=MODEL,
            contents="Paris",
            config=types.GenerateContentConfig(
                tools=[types.Tool(function_declarations=[WEATHER])],
                automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            ),
        )
    )
    calls = [fc for ch in chunks for fc in (ch.function_calls or [])]
    return {"calls": [{"name": fc.name, "args": fc.args} for fc in calls], "n_chunks": len(chunks)}


def case_thinking():
    r = client().models.generate_content(
        model=MODEL,
        contents="think about this",
        config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024)
        ),
    )
    return {"parts": parts_of(r.candidates[0].content), "text": r.text, "usage": usage_of(r.usage_metadata)}


def case_json_mode():
    r = client().models.generate_content(
        model=MODEL,
        contents="Paris",
        config=types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        ),
    )
    return {"text": r.text, "parsed": r.parsed if isinstance(r.parsed, dict) else json.loads(r.text)}


def case_embed():
    r = client().models.embed_content(
        model="gemini-embedding-001",
        contents=["hello", "world"],
        config=types.EmbedContentConfig(output_dimensionality=8),
    )
    return {
        "n": len(r.embeddings),
        "dims": [len(e.values) for e in r.embeddings],
        "norm": sum(x * x for x in r.embeddings[0].values),
        "different": r.embeddings[0].values != r.embeddings[1].values,
    }


def case_count_tokens():
    r = client().models.count_tokens(model=MODEL, contents="hi there")
    return {"total_tokens": r.total_tokens}


def case_models():
    return {"names": [m.name for m in client().models.list()]}


def case_auth_error():
    try:
        client("wrong-key").models.generate_content(model=MODEL, contents="hi")
        return {"raised": None}
    except errors.APIError as e:
        return {"raised": type(e).__name__, "code": e.code, "status": e.status, "message": e.message}


def case_invalid_request():
    try:
        client().models.generate_content(
            model=MODEL, contents="hi", config={"temperature": 5}
        )
        return {"raised": None}
    except errors.APIError as e:
        return {"raised": type(e).__name__, "code": e.code, "status": e.status, "message": e.message}


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    results = {}
    for name in sys.argv[1:]:
        try:
            result = CASES[name]()
            result["sdk_version"] = genai.__version__
        except Exception as e:  # reported per case; the other cases still run
            result = {"exception": type(e).__name__, "message": str(e), "traceback": traceback.format_exc()}
        results[name] = result
    json.dump(results, sys.stdout, ensure_ascii=False, default=str)
    sys.stdout.write("\n")
    sys.exit(1 if any("exception" in r for r in results.values()) else 0)
