//! HTTP and WebSocket emulators of LLM vendors (OpenAI; DashScope native and OpenAI-compatible mode; Tencent
//! Hunyuan; Zhipu GLM; Ollama; iFlytek Spark; Huawei Cloud Pangu with IAM) for wire-level tests.
//!
//! Each [`Emulator`] is an axum server on `127.0.0.1:0` that speaks one vendor's wire format, written from the
//! vendors' docs and the captured official-SDK traffic in `shared/vectors/*_sdk_capture.json` (it does not use
//! `llmux-core`, so it checks our codecs instead of mirroring them). It records every request, answers
//! deterministically, and can be told to misbehave with queued [`Fault`]s, in process or over HTTP.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use llmux_emulator::{Emulator, EmulatorConfig, Fault, FaultKind, Vendor};
//! let emu = Emulator::start(EmulatorConfig::new(Vendor::OpenAi)).await?;
//! emu.push_fault(Fault::once(FaultKind::Status { status: 429, body: None, retry_after: Some("1".into()) }));
//! let base = emu.base_url(); // http://127.0.0.1:PORT/v1, key "sk-emulator-openai"
//! # let _ = base; Ok(()) }
//! ```
//!
//! # Endpoints
//!
//! * OpenAI ([`Vendor::OpenAi`], base `/v1`): `POST /v1/chat/completions`, `POST /v1/embeddings`,
//!   `GET /v1/models`, `GET /v1/models/{id}`; any other path is a 404 OpenAI error.
//! * DashScope ([`Vendor::DashScope`]), native base `/api/v1`:
//!   `POST /api/v1/services/aigc/text-generation/generation`,
//!   `POST /api/v1/services/aigc/multimodal-generation/generation`,
//!   `POST /api/v1/services/embeddings/text-embedding/text-embedding` (any other path: 400 `InvalidURL`);
//!   compatible mode base `/compatible-mode/v1`: `chat/completions`, `embeddings`, `models`, `models/{id}`.
//! * Hunyuan ([`Vendor::Hunyuan`]), native base `/` (the API 3.0 endpoint): `POST /` with `X-TC-Action:
//!   ChatCompletions` and `X-TC-Version: 2023-09-01` (another action: `InvalidAction`; another version:
//!   `NoSuchVersion`; another path: HTTP 404 `UnsupportedOperation`); OpenAI-compatible base `/v1`:
//!   `chat/completions`, `embeddings`, `models` (the OpenAI emulator's handler).
//! * Zhipu ([`Vendor::Zhipu`], base `/api/paas/v4`): `POST /api/paas/v4/chat/completions`,
//!   `POST /api/paas/v4/embeddings`; any other path: 404 `{"timestamp","status":404,"error":"Not Found","path"}`.
//! * Ollama ([`Vendor::Ollama`], base `/`): `POST /api/chat`, `POST /api/generate`, `POST /api/embed`,
//!   `POST /api/embeddings` (legacy), `GET /api/tags`, `GET /api/version`, `GET /` ("Ollama is running");
//!   OpenAI-compatible `/v1/chat/completions`, `/v1/embeddings` (any model) and `/v1/models` (the configured
//!   models). Any other path: 404 `404 page not found` (text/plain).
//! * Spark ([`Vendor::Spark`]) and Pangu ([`Vendor::Pangu`]): see their own sections below.
//!
//! # Authentication
//!
//! OpenAI, DashScope and Hunyuan's OpenAI-compatible `/v1` need `Authorization: Bearer <key>` with a key from
//! [`EmulatorConfig::api_keys`]; Hunyuan native, Zhipu and Ollama are described below, Spark and Pangu (signed
//! WebSocket URLs, HTTP API passwords, IAM tokens and APIG signatures) in their own sections.
//! Otherwise 401 with the vendor's body:
//! * OpenAI, wrong key: `{"error":{"message":"Incorrect API key provided: <masked>.","type":"invalid_request_error",
//!   "param":null,"code":"invalid_api_key"}}`; keys longer than 8 characters are masked as first 3 characters,
//!   `*` for each hidden character, last 4 (`sk-bad` stays as is). Missing header: message
//!   "You didn't provide an API key. ...", `code` null.
//! * DashScope native: `{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"<id>"}`.
//! * DashScope compatible mode: OpenAI envelope, `code` `invalid_api_key`, plus top-level `request_id`.
//!
//! * Hunyuan native (PROTOCOLS 3.2): the TC3-HMAC-SHA256 signature is recomputed from the received method, `/`, raw
//!   query, the headers named in `SignedHeaders` (values trimmed and lower-cased; `content-type` and `host` must be
//!   among them) and SHA-256 of the exact body bytes; the service comes from the credential scope and must be
//!   `hunyuan`, and the scope date must be the UTC date of `X-TC-Timestamp`. Credentials: [`EmulatorConfig::credentials`]
//!   `secret_id` (default [`HUNYUAN_SECRET_ID`] `AKIDemulator`), `secret_key` (default [`HUNYUAN_SECRET_KEY`]
//!   `emulator-secret-key`) and optionally `token` (then `X-TC-Token` must equal it). Errors are HTTP 200
//!   `{"Response":{"Error":{"Code","Message"},"RequestId"}}`, checked in this order: missing or non-TC3
//!   `Authorization` → `AuthFailure.InvalidAuthorization`; no `X-TC-Timestamp` → `MissingParameter`; timestamp more
//!   than 300 s from the emulator's clock → `AuthFailure.SignatureExpire` ("Signature expired. …"); other SecretId →
//!   `AuthFailure.SecretIdNotFound`; token → `AuthFailure.TokenFailure`; scope or signature →
//!   `AuthFailure.SignatureFailure`. The compatible endpoint `/v1` takes `Authorization: Bearer <key>` from
//!   [`EmulatorConfig::api_keys`] (default `sk-emulator-hunyuan`) and answers 401 like OpenAI.
//! * Zhipu: `Authorization: Bearer <credential>` (the `Bearer ` prefix may be omitted), either a configured API key
//!   `<id>.<secret>` (default `emulatorid.emulatorsecret`) or an HS256 JWT: header `alg: HS256`, `sign_type: SIGN`;
//!   payload `api_key` (a configured key's id), `exp` and `timestamp` in **milliseconds**; signed with that key's
//!   secret. HTTP 401 `{"error":{"code","message"}}`: `1000` unknown key or id, `1001` no header, `1002` malformed
//!   token, `1003` expired (`exp` before the emulator's clock; checked after the signature), `1004` bad signature.
//! * Ollama: no authentication on any path.
//!
//! Authentication is checked after fault selection and before routing and validation.
//!
//! # Credentials
//!
//! [`EmulatorConfig::new`] fills [`EmulatorConfig::credentials`] with the vendor's defaults
//! ([`Vendor::default_credentials`]; a field missing from the map also falls back to its default);
//! [`EmulatorConfig::with_credential`] overrides one:
//!
//! | vendor | field = default |
//! |---|---|
//! | Hunyuan | `secret_id` = `AKIDemulator`, `secret_key` = `emulator-secret-key` (optional `token`: no default) |
//! | Spark | `app_id` = `emuappid`, `api_key` = `emu-api-key`, `api_secret` = `emu-api-secret`, `api_password` = `emu-api-password` |
//! | Pangu | `username` = `emu-user`, `password` = `emu-password`, `user_id` = `a0a1a2a3a4a5a6a7a8a9aaabacadaeaf`, `domain_name` = `emu-account`, `domain_id` = `d0d1d2d3d4d5d6d7d8d9dadbdcdddedf`, `project_name` = `cn-southwest-2`, `project_id` = `0a0b0c0d0e0f00010203040506070809`, `ak` = `EMUPANGUAK0000000001`, `sk` = `emu-pangu-secret-key-0000000000000000000` |
//!
//! # Clock
//!
//! Every vendor reads one *emulator clock*: the wall clock when the emulator started, plus **tokio** time elapsed
//! since then, plus a signed offset in milliseconds ([`EmulatorConfig::clock_offset_ms`],
//! [`Emulator::set_clock_offset_ms`] or its whole-seconds form [`Emulator::set_clock_offset`],
//! `PUT /__emulator/clock`). Outside paused time tokio time runs with the real clock, so the emulator clock is the
//! system clock plus the offset; under paused time (`#[tokio::test(start_paused = true)]`) it moves only with
//! `tokio::time::advance` (or tokio's auto-advance while every task is idle), so token expiry can be tested
//! without sleeping. [`Emulator::now`] and [`Emulator::now_unix_ms`] read it.
//!
//! It decides TC3 timestamp skew (300 s), Zhipu JWT expiry, Spark `date` skew (300 s), APIG `X-Sdk-Date` skew
//! (15 min) and IAM token lifetimes, and fills `created`/`Created`/`created_at`. While the offset is non-zero
//! every HTTP response carries a `Date` header from it (so a client can correct its own clock after
//! `AuthFailure.SignatureExpire`); the Spark WebSocket handshake keeps the server's own `Date`.
//!
//! # Ids
//!
//! Requests are numbered 1, 2, … per emulator (`seq`, control routes excluded). DashScope request ids are
//! `00000000-0000-4000-8000-<seq as 12 hex digits>` (body `request_id` and header `x-request-id`; compatible mode
//! also returns it as `request_id` in errors and `id` in embeddings). OpenAI: header `x-request-id:
//! req_emu<seq as 12 hex>`, chat id `chatcmpl-emu<seq as 6 digits>`, `created` = Unix seconds at arrival.
//! Tool-call ids are `call_<i>` with `i` the 0-based position of the call in the answer. Hunyuan (`RequestId`, `Id`,
//! header `X-TC-RequestId` on streams) and Zhipu (`id`; `request_id` unless the request sets one) use the DashScope
//! format; Ollama sends `x-request-id: req_emu…` only as a header.
//!
//! # Deterministic answers
//!
//! * **Pieces.** Text is split into pieces: a run of non-whitespace, non-CJK characters plus the whitespace that
//!   follows it is one piece; each CJK character (CJK ideographs, kana, hangul, CJK/full-width punctuation) plus the
//!   whitespace that follows it is one piece; leading whitespace joins the first piece. Pieces concatenate to the
//!   text. `"You said: hi there"` → `"You "`, `"said: "`, `"hi "`, `"there"`; `"你好"` → `"你"`, `"好"`.
//! * **Message text.** A string `content` as is; an array of parts → the concatenation of the parts' string `text`
//!   fields; otherwise "". DashScope `input.prompt` is one user message.
//! * **Reply.** If the request has tools, `tool_choice` is not `"none"` and the last message is `user`: tool calls
//!   (below). Else if the last message is `tool`: `"Tool results: "` + the contents of the trailing run of tool
//!   messages joined by `"; "`. Else `"You said: "` + the text of the last user message ("" if none).
//! * **stop** (string or strings) cuts the reply before the earliest match (finish `stop`); then **max_tokens**
//!   (OpenAI `max_completion_tokens`, else `max_tokens`; DashScope `parameters.max_tokens`) keeps the first N
//!   pieces, finish `length` if any were dropped. Otherwise finish `stop`.
//! * **Usage.** prompt tokens = Σ over all input messages (every role) of (pieces of its text + 4);
//!   completion tokens = number of reply pieces, or for tool calls Σ per call (1 + argument fragments);
//!   total = prompt + completion. Embeddings: tokens = Σ pieces of each input (token-id inputs: number of ids).
//! * **Tool calls.** Tools answered: only the one named by an object `tool_choice` (unknown name → 400); else all
//!   tools in order when `parallel_tool_calls` is true, only the first otherwise. `parallel_tool_calls` defaults to
//!   true for OpenAI and false for DashScope (native and compatible mode), as the vendors document. Arguments are
//!   compact JSON of an object built from the function's `parameters.properties` in lexicographic key order:
//!   the *key string* (first name in `required` whose type is `string` without `enum`, else the first such
//!   property) gets the last user message's text; other strings get their first `enum` value or `"sample"`;
//!   `integer` 1, `number` 1.5, `boolean` true, `array` [], `object` {}, `null` null, no type `"sample"` (a `type`
//!   array uses its first non-null entry). Streamed arguments are cut into fragments of 8 characters.
//!   DashScope answers with tools only for `result_format: "message"` (and multimodal); text format ignores tools.
//!   Hunyuan native, Zhipu and Ollama have no `parallel_tool_calls`: they answer the first tool only. Hunyuan's
//!   `ToolChoice: "custom"` + `CustomTool.Function.Name` names the tool (unknown name: `InvalidParameterValue`);
//!   Hunyuan's `Tools[].Function.Parameters` is a JSON string (an object: `InvalidParameter`).
//! * **Vendor options.** Hunyuan `Stop` keeps the stop string (Hunyuan stops *after* the match; no max-tokens
//!   option); Zhipu `max_tokens`, `stop`; Ollama `options.num_predict` (negative = unlimited), `options.stop`.
//!   Ollama `/api/generate` treats `system` + `prompt` as a system and a user message; a chat without messages (or a
//!   generate without prompt) only loads the model: `done_reason: "load"`, empty answer.
//! * **Embeddings.** Vector = for seed FNV-1a-64(UTF-8 text), component i = i-th splitmix64 output `z`,
//!   `(z >> 40) / 2^23 - 1`, then divided by the L2 norm, as f32 (JSON numbers are the shortest f32 decimal;
//!   OpenAI `encoding_format:"base64"` = base64 of little-endian f32). Token-id inputs hash the compact JSON of
//!   the id array. Dimensions: OpenAI `dimensions`, else 3072 for `text-embedding-3-large`, else 1536;
//!   compatible mode `dimensions` else 1024; DashScope native `parameters.dimension`, default 1024 for models
//!   containing `v3`/`v4`, else 1536 (v1/v2 allow only 1536; v3 1024/768/512/256/128/64; v4 also 2048/1536).
//!   Zhipu `dimensions` (any positive value), else 2048 for `embedding-3` and 1024 otherwise; Ollama `dimensions`,
//!   else 768 (`/api/embed` returns one vector per input and `[]` for no input; legacy `/api/embeddings` one
//!   `embedding`, `[]` for an empty prompt).
//!
//! # Wire shapes
//!
//! * OpenAI chat non-stream: PROTOCOLS 2.3 (`message.refusal` null, usage details zero, `system_fingerprint` null;
//!   tool answers have `content` null). Stream: `data: <chunk>\n\n` frames: `{"role":"assistant","content":""}`,
//!   one `{"content":piece}` per piece, `{}` with the finish reason, then with `stream_options.include_usage` a
//!   `choices:[]` usage chunk (and `"usage":null` on every other chunk), then `data: [DONE]`. Tool streams: per
//!   call a fragment with `index`, `id`, `type`, `function.name`, `arguments:""` (the first also carries
//!   `role:"assistant","content":null`), then one `{"index":i,"function":{"arguments":fragment}}` per fragment.
//! * DashScope native non-stream: PROTOCOLS 1.3; `result_format` defaults to `text`; multimodal is always the
//!   message format with `content: [{"text": ...}]` (`[]` for tool calls). Streaming only with header
//!   `X-DashScope-SSE: enable` (a body `stream` field is ignored): `id:N\nevent:result\n:HTTP_STATUS/200\ndata:..`
//!   frames, one per piece (one empty frame for an empty reply) or, for tools, per call one frame with id and
//!   name then one per fragment (continuations have `"id":""` and no name); `finish_reason` `"null"` until the
//!   last frame, which carries the finish reason itself; running usage on every frame; no `[DONE]`.
//!   `parameters.incremental_output: true` sends only the new piece, otherwise everything so far.
//! * Validation: malformed JSON → 400; OpenAI: missing/empty `model` or `messages` → 400
//!   `invalid_request_error`; DashScope: missing `model` → 400 `BadRequest.EmptyModel`; `input` with neither
//!   `prompt` nor non-empty `messages` → 400 `InvalidParameter` "Either \"prompt\" or \"messages\" must exist and
//!   cannot both be none"; embeddings: v3/v4 more than 10 texts, v1/v2 more than 25 → 400 `InvalidParameter`;
//!   compatible-mode embeddings: `encoding_format` other than `float` → 400, more than 10 inputs → 400.
//!   Unknown fields are ignored. Only one choice is produced whatever `n` says.
//! * Hunyuan native non-stream: PROTOCOLS 3.3, `{"Response":{"RequestId","Id","Created","Note","Choices":[{"Index":0,
//!   "FinishReason","Message":{"Role","Content","ToolCalls"?:[{"Id","Type","Function":{"Name","Arguments"},
//!   "Index"}]}}],"Usage":{"PromptTokens","CompletionTokens","TotalTokens"}}}`. Stream (`Stream: true`):
//!   `text/event-stream`, `data: <json>\n\n` events not wrapped in `Response` (`Note`, `Choices[{Index,
//!   FinishReason,Delta{Role,Content,ToolCalls?}}]`, `Created`, `Id`, `Usage`): one per piece, or per tool call one
//!   with `Id`, `Type`, `Function.Name`, `Arguments:""` then one per fragment carrying `Id`, `Index` and
//!   `Function.Arguments`; `FinishReason` `""` until a final event with empty content; cumulative `Usage` on every
//!   event; no `[DONE]`. Validation (HTTP 200): missing `Model`/`Messages` (or empty) → `MissingParameter`; bad
//!   role, a `tool` message without `ToolCallId`, a last message that is not `user`/`tool`, wrong types →
//!   `InvalidParameter`; `Temperature` outside 0–2, `TopP` outside 0–1, `Seed` outside 1–10000, unknown
//!   `ToolChoice` → `InvalidParameterValue`.
//! * Zhipu: `{"id","request_id","created","model","object":"chat.completion","choices":[{"index":0,"finish_reason",
//!   "message":{"role","content","tool_calls"?:[{"id","index","type","function":{"name","arguments"}}]}}],
//!   "usage"}` (`content` null for tool calls). Stream: `data: <chunk>\n\n`, `role` on every delta, no
//!   `finish_reason` until the last chunk, which has the finish reason, an empty delta content and the only
//!   `usage`; tool calls come whole, one chunk per call; then `data: [DONE]`. `do_sample`, `user_id`, `thinking`,
//!   `response_format` and non-function tools (`web_search`, `retrieval`) are accepted and ignored. Validation (400):
//!   bad JSON or `temperature`/`top_p` outside 0–1 → `1210`; no `model` → `1211`; missing or empty `messages` →
//!   `1214`. Embeddings: `{"model","data":[{"index","object":"embedding","embedding"}],"object":"list","usage"}`.
//! * Ollama: PROTOCOLS 7. Non-stream `application/json`; stream (`stream` defaults to **true**)
//!   `application/x-ndjson`, one object per `\n`-terminated line: `{"model","created_at","message":{"role",
//!   "content":piece},"done":false}` (generate: `response`), tool calls whole in one line with `arguments` as a JSON
//!   object, then `{"done":true,"done_reason":"stop"|"length", "total_duration","load_duration",
//!   "prompt_eval_count","prompt_eval_duration","eval_count","eval_duration"}` (generate adds `context`: token ids
//!   1..=total). Durations are deterministic: load 1 ms, 0.1 ms per prompt token, 1 ms per completion token.
//!   Errors `{"error":"…"}`: unknown model → 404 `model 'x' not found` (models from [`EmulatorConfig::models`],
//!   default [`OLLAMA_MODELS`]; `x` = `x:latest`); no `model` or bad JSON → 400.
//!
//! # Faults
//!
//! Faults queue in order; a request takes the *first* queued fault whose `path_contains` matches (control routes
//! never match), its `times` is decremented and it is removed when it reaches 0 (`times: 0` = forever). At most
//! one fault applies per request. Status, Html, QuotaExhausted and ErrorBody200 replace the answer (before auth);
//! the others shape the normal answer. For streams, "frames" count every SSE frame as sent (OpenAI: the role chunk
//! is frame 1 and `[DONE]` is a frame), and `after`/`N` is clamped to frames − 1 so the fault always lands before
//! the stream's last frame. [`FaultKind`] documents each kind and its JSON shape. Every request is logged with
//! the status that was answered.
//!
//! Vendor specifics: Hunyuan native errors are HTTP 200 (`QuotaExhausted` → `FailedOperation.ResourcePackExhausted`,
//! `ErrorBody200` → `InternalError`; a `Status` fault keeps its HTTP status with a Tencent body such as
//! `RequestLimitExceeded`); its mid-stream error event is `{"Note","Choices":[],"Created","Id","ErrorMsg":{"Code":4000,
//! "Msg"}}`. Zhipu: `QuotaExhausted` → 429 `1113` (Zhipu documents arrears as 429), mid-stream error
//! `data: {"error":{"code":"1301","message"}}` without `[DONE]`. Ollama streams count NDJSON lines as frames; its
//! mid-stream error is the line `{"error":"an error was encountered while running the model: unexpected EOF"}`;
//! `QuotaExhausted` is a plain 429 `{"error":"quota exhausted"}` (Ollama has no quotas).
//!
//! # Timing
//!
//! `latency` (and `DelayFirstByte`) sleep before the response head; `token_interval` sleeps between stream frames.
//! All sleeps are `tokio::time::sleep`, so tests under paused time drive them. Accepted sockets get TCP_NODELAY.
//!
//! # Control surface (no auth, not logged)
//!
//! * `POST /__emulator/faults` with a [`Fault`] or an array of them → `200 {"queued":N}`; bad JSON → 400.
//! * `GET /__emulator/faults` → the queue; `DELETE /__emulator/faults` → 204, queue cleared.
//! * `GET /__emulator/requests` → `[{"method","path","query","headers":[[name,value],...],"body":"<utf-8, lossy>",
//!   "status","unix_ms"}]` in arrival order; `DELETE /__emulator/requests` → 204, log cleared.
//! * `PUT /__emulator/latency` with `{"ms":N}` → 204.
//! * `PUT /__emulator/clock` with `{"offset_ms":N}` or `{"offset_secs":N}` (signed; `offset_ms` wins if both are
//!   given) → 204, same as [`Emulator::set_clock_offset_ms`]; `GET /__emulator/clock` → `{"offset_ms","unix_ms"}`
//!   (the offset and the emulator clock now).
//! * `PUT /__emulator/token_ttl` with `{"secs":N}` → 204; same as [`Emulator::set_token_ttl`].
//! * `POST /__emulator/tokens/expire` → 204; same as [`Emulator::expire_tokens`].
//!
//! # iFlytek Spark ([`Vendor::Spark`])
//!
//! [`Emulator::base_url`] is `ws://127.0.0.1:P`; [`Emulator::compat_base_url`] is `http://127.0.0.1:P/v1`.
//!
//! * **WebSocket paths and domains** (`parameter.chat.domain` must be one of the path's, else error 10005):
//!   `/v1.1/chat` `lite` or `general`; `/v2.1/chat` `generalv2`; `/v3.1/chat` `generalv3`; `/chat/pro-128k`
//!   `pro-128k`; `/v3.5/chat` `generalv3.5`; `/chat/max-32k` `max-32k`; `/v4.0/chat` `4.0Ultra`. Any other GET
//!   path: 404 `{"message":"no Route matched with those values"}`.
//! * **Handshake.** Checked in this order, before the upgrade (a plain GET gets the same answers): a status/HTML
//!   fault fails it with that status; an unknown path is a 404; then the URL auth of PROTOCOLS.md 4.2 with the
//!   `api_key`/`api_secret` credentials, recomputing the signature over the `host` *query* value, the `date`
//!   value and `GET <path> HTTP/1.1`. Refusals are JSON `{"message": …}`: no/garbled `authorization`, `date` or
//!   `host` → 401 `Unauthorized`; `date` not RFC 1123 (with the right weekday) or more than 300 s from the
//!   emulator clock → 403 `HMAC signature cannot be verified, a valid date or x-date header is required for HMAC
//!   Authentication`; other `api_key`, or `algorithm`/`headers` not `hmac-sha256`/`host date request-line` → 401
//!   `HMAC signature cannot be verified`; wrong signature → 401 `HMAC signature does not match`. Extra spaces
//!   between the `authorization` fields (sparkai's LLM client) are accepted. A passing request without upgrade
//!   headers gets axum's upgrade rejection. The log records the GET (path, query, headers) with status 101 and,
//!   once it arrives, the client's first frame as the body.
//! * **Frames.** One client text frame (PROTOCOLS.md 4.3). The answer is one text frame per reply piece:
//!   `header{code:0,message:"Success",sid,status}`, `payload.choices{status,seq,text:[{content,role:"assistant",
//!   index:0}]}`; status 0 on the first frame, 1 in between, 2 on the last (a single-piece reply is one status-2
//!   frame; the last frame carries text too); `payload.usage.text{question_tokens,prompt_tokens,
//!   completion_tokens,total_tokens}` on the last frame only (`question_tokens` = tokens of the last user
//!   message). Then a close frame (1000). `payload.functions.text` are the tools (honoured on every domain);
//!   the answer is then one status-2 frame with `content:""`, `content_type:"text"` and `function_call{name,
//!   arguments}` (first function only). `parameter.chat.max_tokens` cuts the reply as in the shared rules.
//! * **Frame errors** (one frame `{"header":{"code","message","sid","status":2}}`, then close): not JSON or a
//!   binary frame → 10003; missing `header.app_id`, `parameter.chat`, `domain`, `payload.message.text` or
//!   malformed entries → 10004; `header.app_id` not the `app_id` credential → 10313; domain/path mismatch,
//!   `temperature` outside (0, 1], `max_tokens` outside 1–4096 (`/v1.1/chat`, `/chat/pro-128k`) or 1–8192,
//!   `top_k` outside 1–6, a role other than system/user/assistant, a system message after the first, a
//!   `uid` that is not a string of at most 32 characters, or an empty `text` → 10005; prompt tokens over the context (8192; max-32k 32768;
//!   pro-128k 131072) → 10907.
//! * **Faults.** Status and Html fail the upgrade; QuotaExhausted → frame 11200 (`AppIdNoAuthError`),
//!   ErrorBody200 → frame 10012, both after the client's frame; ErrorEvent → after N answer frames an error
//!   frame 10013, then close; StreamCutAfter → after N frames the TCP connection is dropped (no status-2 frame,
//!   no close frame); MalformedFrame → after N frames one non-JSON text frame, then the rest; IdleAfter → a
//!   stall; DelayFirstByte → a sleep before the first answer frame. N is clamped as for SSE. `latency` sleeps
//!   before the 101; `token_interval` between answer frames. Status faults without a body answer
//!   `{"message": …}` (401 `Unauthorized`, 403 `Forbidden`, 429 `API rate limit exceeded`, 5xx `An unexpected
//!   error occurred`).
//! * **HTTP API** `POST /v1/chat/completions` with `Authorization: Bearer <k>`, `k` = the `api_password`
//!   credential, `<api_key>:<api_secret>`, or one of [`EmulatorConfig::api_keys`] (default
//!   [`Vendor::default_key`] = `emu-api-password`); otherwise 401 `{"error":{"message":"invalid user",
//!   "type":"api_error","param":null,"code":null}}`. `model` must be one of `lite`, `generalv3`, `pro-128k`,
//!   `generalv3.5`, `max-32k`, `4.0Ultra`. Answer: `{"code":0,"message":"Success","sid","id"(=sid),"created",
//!   "object":"chat.completion","model","choices":[{"index":0,"message":{"role","content","tool_calls"?},
//!   "finish_reason"}],"usage":{"prompt_tokens","completion_tokens","total_tokens"}}`; one tool call at most
//!   (`parallel_tool_calls` false). Stream: `data:{…}\n\n` (no space) with `code`, `message`, `sid`, `id`,
//!   `created` and `choices[{delta:{role,content},index}]` per piece (tool calls: a delta with id, name and empty
//!   arguments, then 8-character argument fragments), then a delta with `content:""`, `finish_reason` and
//!   `usage`, then `data:[DONE]`. Errors are `{"code","message","sid"}`: bad JSON 400 code 10003; bad model,
//!   messages, role, `temperature` (outside [0, 2]), `top_k`, `max_tokens` → 400 code 10005. Faults:
//!   QuotaExhausted 429 code 11200; ErrorBody200 200 code 10012; ErrorEvent 400 code 10013 (stream: a
//!   `data:{"code":10013,…}` event ends it); Status without a body: 401 as above, 403 code 11200, 429 code
//!   11202, 5xx code 10012, other 4xx code 10005.
//! * **Ids.** WebSocket `sid` = `cht<seq as 8 hex>@dx<seq as 16 hex>`; HTTP `sid` = `cha…` in the same shape
//!   (also the `x-request-id` header).
//!
//! # Huawei Cloud Pangu ([`Vendor::Pangu`])
//!
//! [`Emulator::base_url`] is `http://127.0.0.1:P`; it is also the IAM endpoint.
//!
//! * **IAM** `POST /v3/auth/tokens[?nocatalog=true]` (no auth) with the password identity (user `name` or `id`,
//!   `password`, `domain.name` or `domain.id` matching the credentials) or `hw_ak_sk` (`access.key`/`secret.key`
//!   = `ak`/`sk`); scope `project` by `name`/`id`, `domain` by `name`/`id`, or none. Success: 201, header
//!   `X-Subject-Token: MII<256 base64 characters>`, body `{"token":{"expires_at","issued_at"
//!   (`2024-01-01T00:00:00.000000Z`),"methods":[<method>],"user":{domain,id,name,password_expires_at},
//!   "project"{domain,id,name}|"domain"{id,name},"roles":[],"catalog"}}`; `catalog` (one `pangu` service whose
//!   endpoint URL is `http://<Host header>`) is left out with `nocatalog=true`. Wrong credentials: 401
//!   `{"error":{"code":401,"message":"The username or password is wrong.","title":"Unauthorized"}}`; a body that
//!   is not a token request or a scope the account lacks: 400 in the same shape. Tokens live 24 h
//!   ([`Emulator::set_token_ttl`] changes it for tokens issued afterwards) on the emulator clock;
//!   [`Emulator::expire_tokens`] forgets every issued token. Token requests are logged like any request (path
//!   `/v3/auth/tokens`), so a test can count them.
//! * **Chat** V1 `POST /v1/{project_id}/deployments/{deployment_id}/chat/completions` and V2
//!   `POST /api/v2/chat/completions` (`model` required). Authentication, in order: `X-Auth-Token` = an issued,
//!   unexpired token or one of [`EmulatorConfig::api_keys`] (static tokens, default `emu-pangu-token`); otherwise
//!   `Authorization: SDK-HMAC-SHA256 …` verified per PROTOCOLS.md 5.2 with the `ak`/`sk` credentials (the
//!   canonical request is rebuilt from the path and query as received and the exact body bytes; `host` and
//!   `x-sdk-date` must be signed). Failures are 401 `{"error_code","error_msg","request_id"}`: no, unknown or
//!   expired token → `APIG.1002` "Incorrect token or token resolution failed"; signing problems → `APIG.0301`
//!   "Incorrect IAM authentication information: …" (`verify aksk signature fail, …` for a wrong signature,
//!   `signature expired, …` when `X-Sdk-Date` is more than 15 min from the emulator clock, `ak not found`,
//!   `Authorization format incorrect, …`). On V1, a token not scoped to the path's project (or AK/SK with a path
//!   project other than `project_id`) → 403 `APIG.1005`.
//! * **Body and answer** as PROTOCOLS.md 5.3 / the shared rules: `messages` (a missing role is `user`; roles
//!   system/user/assistant/tool), `temperature` within [0, 1] (V2 [0, 2]), `top_p` [0, 1], `max_tokens` ≥ 1,
//!   `stop`, `tools`, `tool_choice`, `parallel_tool_calls` (default false); violations → 400 `PANGU.0400`.
//!   Answer `{"id":"chatcmpl-emu<seq as 6 digits>","object":"chat.completion","created","model"(V2 the body's
//!   model, V1 the deployment id),"choices":[{"index":0,"message":{"role":"assistant","content"(""for tool
//!   calls),"tool_calls"?},"logprobs":null,"finish_reason","stop_reason":null}],"usage":{…}}`. Stream: `data:
//!   {chat.completion.chunk}` frames as OpenAI's (role chunk, one per piece or tool fragment), a final chunk
//!   with `finish_reason` and `usage`, then `data: [DONE]`. Other paths: 404 `APIG.0101`.
//! * **Faults** (apply to IAM requests too unless restricted with `path_contains`): Status without a body →
//!   401 `APIG.1002`, 403 `APIG.1005`, 404 `APIG.0101`, 429 `APIG.0308`, 502/503 `APIG.0201`, 504 `APIG.0202`,
//!   other 5xx `PANGU.0500`, other 4xx `PANGU.0400` (on `/v3/...` a Keystone-style `{"error":{code,message,
//!   title}}`); QuotaExhausted → 403 `PANGU.0403`; ErrorBody200 → 200 `PANGU.0500`; ErrorEvent → 400
//!   `PANGU.0451` (stream: a `data: {"error_code":"PANGU.0451",…}` event ends it). Request ids (`request_id`,
//!   `x-request-id`) are the seq as 32 hex digits. The `APIG.*`/`PANGU.*` codes other than `APIG.1002` and
//!   `APIG.0301` are the emulator's choice (the vendor's are unverified).

mod answer;
mod auth;
mod clock;
mod control;
mod emulator;
mod env;
mod fault;
mod ndjson;
mod reply;
mod sse;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Response;
use axum::serve::ListenerExt as _;
use axum::Router;
use bytes::Bytes;

pub use fault::{Fault, FaultKind};

use reply::{Ctx, Incoming};

/// Largest request body the emulator reads (larger bodies are treated as empty).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// The vendor an emulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Vendor {
    /// OpenAI `/v1`.
    OpenAi,
    /// Alibaba DashScope: native `/api/v1` and OpenAI-compatible `/compatible-mode/v1`.
    DashScope,
    /// Tencent Hunyuan: native API 3.0 at `/` (TC3-signed) and OpenAI-compatible `/v1` (bearer key).
    Hunyuan,
    /// Zhipu GLM `/api/paas/v4` (raw key or JWT bearer).
    Zhipu,
    /// Ollama native `/api/...` (NDJSON streams) and OpenAI-compatible `/v1`; no auth.
    Ollama,
    /// iFlytek Spark: WebSocket chat (`/v3.5/chat`, …) and the OpenAI-compatible HTTP API `/v1`.
    Spark,
    /// Huawei Cloud Pangu (V1 deployments, V2) with Huawei IAM tokens and APIG AK/SK signing.
    Pangu,
}

impl Vendor {
    /// The stable provider id (`openai`, `dashscope`, `hunyuan`, `zhipu`, `ollama`, `spark`, `pangu`).
    pub fn id(self) -> &'static str {
        match self {
            Vendor::OpenAi => "openai",
            Vendor::DashScope => "dashscope",
            Vendor::Hunyuan => "hunyuan",
            Vendor::Zhipu => "zhipu",
            Vendor::Ollama => "ollama",
            Vendor::Spark => "spark",
            Vendor::Pangu => "pangu",
        }
    }

    /// The key an [`EmulatorConfig::new`] accepts by default: a bearer key (OpenAI, DashScope, Hunyuan's
    /// OpenAI-compatible endpoint); Zhipu's `<id>.<secret>` API key; Ollama checks no key (`ollama` is what its
    /// docs tell OpenAI clients to send); for Spark the HTTP API password (`emu-api-password`, also the default
    /// `api_password` credential); for Pangu a static `X-Auth-Token` (`emu-pangu-token`) that never expires.
    pub fn default_key(self) -> &'static str {
        match self {
            Vendor::OpenAi => "sk-emulator-openai",
            Vendor::DashScope => "sk-emulator-dashscope",
            Vendor::Hunyuan => "sk-emulator-hunyuan",
            Vendor::Zhipu => "emulatorid.emulatorsecret",
            Vendor::Ollama => "ollama",
            Vendor::Spark => "emu-api-password",
            Vendor::Pangu => "emu-pangu-token",
        }
    }

    /// The credentials an [`EmulatorConfig::new`] starts with (field, value): Hunyuan `secret_id` =
    /// [`HUNYUAN_SECRET_ID`] and `secret_key` = [`HUNYUAN_SECRET_KEY`]; Spark and Pangu as listed in the crate
    /// docs ("Credentials"); none for the others.
    pub fn default_credentials(self) -> Vec<(&'static str, &'static str)> {
        auth::state::default_credentials(self).to_vec()
    }

    /// The models an [`EmulatorConfig::new`] knows: Ollama [`OLLAMA_MODELS`]; empty (any model) for the others.
    pub fn default_models(self) -> Vec<String> {
        match self {
            Vendor::Ollama => OLLAMA_MODELS.iter().map(|m| (*m).to_owned()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Default Hunyuan `SecretId` (credential field `secret_id`).
pub const HUNYUAN_SECRET_ID: &str = "AKIDemulator";
/// Default Hunyuan `SecretKey` (credential field `secret_key`).
pub const HUNYUAN_SECRET_KEY: &str = "emulator-secret-key";
/// Models a default Ollama emulator has pulled.
pub const OLLAMA_MODELS: &[&str] = &["llama3.2", "qwen2.5:7b", "nomic-embed-text"];

/// How to start an [`Emulator`]. `Debug` redacts the keys.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// The vendor to speak.
    pub vendor: Vendor,
    /// Accepted bearer keys.
    pub api_keys: Vec<String>,
    /// Listen address; default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// Sleep before every response head; default zero.
    pub latency: Duration,
    /// Sleep between stream frames; default zero.
    pub token_interval: Duration,
    /// Vendor credentials other than bearer keys, by field name (`secret_id`, `secret_key`,
    /// `app_id`, `api_secret`, …); each vendor documents the fields it reads.
    pub credentials: std::collections::BTreeMap<String, String>,
    /// Models the emulator knows; requests naming another get the vendor's not-found error. Only Ollama reads it
    /// (default [`OLLAMA_MODELS`]); empty = any model.
    pub models: Vec<String>,
    /// Offset of the emulator clock from the real clock, in milliseconds (negative = behind). Used for signature
    /// and token expiry checks, `created` fields and, when non-zero, the `Date` header; default 0 (crate docs,
    /// "Clock").
    pub clock_offset_ms: i64,
}

impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("vendor", &self.vendor)
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field("bind", &self.bind)
            .field("latency", &self.latency)
            .field("token_interval", &self.token_interval)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("models", &self.models)
            .field("clock_offset_ms", &self.clock_offset_ms)
            .finish()
    }
}

impl EmulatorConfig {
    /// Defaults: the vendor's default key ([`Vendor::default_key`]), credentials
    /// ([`Vendor::default_credentials`]) and models ([`Vendor::default_models`]), `127.0.0.1:0`, no latency, no
    /// token interval, no clock offset.
    pub fn new(vendor: Vendor) -> Self {
        EmulatorConfig {
            vendor,
            api_keys: vec![vendor.default_key().to_owned()],
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO,
            token_interval: Duration::ZERO,
            credentials: vendor
                .default_credentials()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            models: vendor.default_models(),
            clock_offset_ms: 0,
        }
    }

    /// Replaces the known models (empty = any model).
    pub fn with_models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the offset of the emulator clock from the real clock, in milliseconds (negative = behind).
    pub fn with_clock_offset_ms(mut self, offset_ms: i64) -> Self {
        self.clock_offset_ms = offset_ms;
        self
    }

    /// Sets a vendor credential (`secret_id`, `secret_key`, …).
    pub fn with_credential(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.credentials.insert(field.into(), value.into());
        self
    }

    /// Replaces the accepted keys.
    pub fn with_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.api_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the listen address.
    pub fn with_bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }

    /// Sets the sleep before every response head.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the sleep between stream frames.
    pub fn with_token_interval(mut self, interval: Duration) -> Self {
        self.token_interval = interval;
        self
    }
}

/// One request as the emulator received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Headers in arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Bytes,
    /// Arrival time on tokio's clock.
    pub at: tokio::time::Instant,
    /// Arrival wall-clock time.
    pub wall: SystemTime,
    /// Status the emulator answered (0 while the answer is still being prepared).
    pub status: u16,
}

impl RecordedRequest {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// State shared by the server task and the handle.
pub(crate) struct Shared {
    vendor: Vendor,
    api_keys: Vec<String>,
    token_interval: Duration,
    latency: Mutex<Duration>,
    seq: AtomicU64,
    /// (seq, request), arrival order.
    log: Mutex<Vec<(u64, RecordedRequest)>>,
    faults: Mutex<Vec<Fault>>,
    /// Models the emulator knows (Ollama).
    models: Vec<String>,
    /// The emulator clock every vendor reads (signature skew, token expiry, `created` fields, `Date`).
    clock: clock::Clock,
    /// Vendor credentials and issued IAM tokens.
    auth: auth::state::AuthState,
}

/// Locks a mutex, ignoring poisoning (the data stays usable: every critical section is a plain update).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log).iter().map(|(_, r)| r.clone()).collect()
    }

    pub(crate) fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    pub(crate) fn push_fault(&self, fault: Fault) {
        lock(&self.faults).push(fault);
    }

    pub(crate) fn faults(&self) -> Vec<Fault> {
        lock(&self.faults).clone()
    }

    pub(crate) fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    pub(crate) fn set_latency(&self, d: Duration) {
        *lock(&self.latency) = d;
    }

    /// Takes the first fault matching `path`, decrementing its count.
    fn take_fault(&self, path: &str) -> Option<FaultKind> {
        let mut q = lock(&self.faults);
        let i = q.iter().position(|f| f.matches(path))?;
        let kind = q[i].kind.clone();
        match q[i].times {
            0 => {}
            1 => {
                q.remove(i);
            }
            _ => q[i].times -= 1,
        }
        Some(kind)
    }

    fn set_status(&self, seq: u64, status: u16) {
        if let Some((_, r)) = lock(&self.log).iter_mut().rev().find(|(s, _)| *s == seq) {
            r.status = status;
        }
    }
}

/// A running emulator. Dropping it stops the server (the accept task is aborted).
pub struct Emulator {
    addr: SocketAddr,
    vendor: Vendor,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("vendor", &self.vendor)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Emulator {
    /// Binds `cfg.bind` and serves in a background task of the current tokio runtime.
    pub async fn start(cfg: EmulatorConfig) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            vendor: cfg.vendor,
            api_keys: cfg.api_keys,
            token_interval: cfg.token_interval,
            latency: Mutex::new(cfg.latency),
            seq: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            models: cfg.models,
            clock: clock::Clock::new(cfg.clock_offset_ms),
            auth: auth::state::AuthState::new(cfg.vendor, cfg.credentials),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!("could not set TCP_NODELAY on an accepted socket: {err}");
            }
        });
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!("emulator server stopped: {err}");
            }
        });
        Ok(Emulator {
            addr,
            vendor: cfg.vendor,
            shared,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:P` without any path.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The vendor's base URL: OpenAI `http://127.0.0.1:P/v1`, DashScope native `http://127.0.0.1:P/api/v1`,
    /// Hunyuan `http://127.0.0.1:P/` (the API 3.0 endpoint), Zhipu `http://127.0.0.1:P/api/paas/v4`, Ollama
    /// `http://127.0.0.1:P`, Spark `ws://127.0.0.1:P` (append `/v3.5/chat`, …), Pangu `http://127.0.0.1:P` (append
    /// `/v1/...`; also the IAM endpoint).
    pub fn base_url(&self) -> String {
        match self.vendor {
            Vendor::OpenAi => format!("http://{}/v1", self.addr),
            Vendor::DashScope => format!("http://{}/api/v1", self.addr),
            Vendor::Hunyuan => format!("http://{}/", self.addr),
            Vendor::Zhipu => format!("http://{}/api/paas/v4", self.addr),
            Vendor::Ollama => format!("http://{}", self.addr),
            Vendor::Spark => format!("ws://{}", self.addr),
            Vendor::Pangu => format!("http://{}", self.addr),
        }
    }

    /// The OpenAI-compatible base URL: DashScope `http://127.0.0.1:P/compatible-mode/v1`, Hunyuan, Ollama and
    /// Spark `http://127.0.0.1:P/v1`; OpenAI, Zhipu and Pangu: `None`.
    pub fn compat_base_url(&self) -> Option<String> {
        match self.vendor {
            Vendor::OpenAi | Vendor::Zhipu | Vendor::Pangu => None,
            Vendor::DashScope => Some(format!("http://{}/compatible-mode/v1", self.addr)),
            Vendor::Hunyuan | Vendor::Ollama | Vendor::Spark => {
                Some(format!("http://{}/v1", self.addr))
            }
        }
    }

    /// The request log, in arrival order (control routes excluded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// Queues a fault.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.push_fault(fault);
    }

    /// Empties the fault queue.
    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Changes the sleep before every response head.
    pub fn set_latency(&self, d: Duration) {
        self.shared.set_latency(d);
    }

    /// Moves the emulator clock `offset_ms` milliseconds away from the real clock (negative = behind), e.g. to
    /// make a client's TC3 timestamps, Spark `date` or APIG `X-Sdk-Date` look skewed, to accept a recorded JWT, or
    /// to jump past IAM token expiry. Replaces the previous offset.
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.shared.clock.set_offset_ms(offset_ms);
    }

    /// [`Emulator::set_clock_offset_ms`] in whole seconds (a convenience for second-resolution schemes).
    pub fn set_clock_offset(&self, offset_secs: i64) {
        self.set_clock_offset_ms(offset_secs.saturating_mul(1000));
    }

    /// The current clock offset in milliseconds.
    pub fn clock_offset_ms(&self) -> i64 {
        self.shared.clock.offset_ms()
    }

    /// The emulator clock now: wall time at start + tokio time since start + the offset (crate docs, "Clock").
    pub fn now(&self) -> SystemTime {
        self.shared.clock.now()
    }

    /// [`Emulator::now`] as Unix milliseconds.
    pub fn now_unix_ms(&self) -> i64 {
        self.shared.clock.now_unix_ms()
    }

    /// Sets the lifetime of IAM tokens issued from now on (default 24 h).
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.auth.tokens.set_ttl(ttl);
    }

    /// Invalidates every IAM token issued so far: they answer 401 `APIG.1002` from now on.
    pub fn expire_tokens(&self) {
        self.shared.auth.tokens.expire_all();
    }
}

/// Every request lands here: control routes, then fault selection, auth, the vendor handler, timing.
async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    if path.starts_with(control::PREFIX) {
        return control::handle(&shared, parts.method.as_str(), &path, &body);
    }
    let seq = shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let wall = SystemTime::now();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
        at: tokio::time::Instant::now(),
        wall,
        status: 0,
    };
    lock(&shared.log).push((seq, recorded));

    let now_ms = shared.clock.now_unix_ms();
    let ctx = Ctx {
        dialect: emulator::dialect(shared.vendor, &path),
        seq,
        created: u64::try_from(now_ms.div_euclid(1000)).unwrap_or(0),
        now_ms,
    };
    if ctx.dialect == reply::Dialect::SparkWs {
        return emulator::spark::websocket(shared, parts, ctx).await;
    }
    let incoming = Incoming {
        method: parts.method.as_str(),
        path: &path,
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };
    let fault = shared.take_fault(&path);
    let mut reply = match fault.as_ref().and_then(|f| fault::replacement(f, &ctx)) {
        Some(r) => r,
        None => emulator::check_auth(&ctx, &incoming, &shared)
            .unwrap_or_else(|| emulator::route(&ctx, &incoming, &shared)),
    };
    if shared.clock.offset_ms() != 0 {
        reply = reply.with_header("date", clock::format_rfc1123(now_ms.div_euclid(1000)));
    }
    if matches!(fault, Some(FaultKind::ErrorEvent { .. }))
        && !reply.is_stream()
        && reply.status == 200
        && !emulator::is_http_200_error(&ctx, &reply)
    {
        reply = fault::content_filter(&ctx);
    }
    shared.set_status(seq, reply.status);

    let latency = *lock(&shared.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(FaultKind::DelayFirstByte(d)) = fault {
        tokio::time::sleep(d).await;
    }
    fault::into_response(reply, fault, ctx, shared.token_interval)
}
