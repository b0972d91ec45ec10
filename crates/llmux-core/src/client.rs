//! The client: resolves `provider/model`, builds providers from settings or the environment,
//! sends through [`Transport`], and turns response bodies into events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use http::HeaderMap;

use crate::clock::Clock;
use crate::codec::{Frame, NdjsonDecoder, SseDecoder, Tail, DEFAULT_MAX_FRAME};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{HttpRequest, HttpResponse, StreamingResponse, Transport, TransportConfig};
use crate::providers::{self, AuthContext, Framing, Provider, ProviderSettings, StreamParser};
use crate::stream::{response_to_events, ChatStream, StreamEvent};
use crate::types::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, ModelInfo};

/// Builds a [`Client`].
#[derive(Debug, Default)]
pub struct ClientBuilder {
    settings: HashMap<String, ProviderSettings>,
    no_env: bool,
    transport: TransportConfig,
    max_frame: Option<usize>,
    clock: Option<Clock>,
}

impl ClientBuilder {
    /// Explicit settings for provider `id`; fields set here override the environment.
    pub fn provider(mut self, id: &str, settings: ProviderSettings) -> Self {
        self.settings.insert(id.to_owned(), settings);
        self
    }

    /// Do not read provider settings from environment variables.
    pub fn without_env(mut self) -> Self {
        self.no_env = true;
        self
    }

    /// Connection settings.
    pub fn transport(mut self, config: TransportConfig) -> Self {
        self.transport = config;
        self
    }

    /// Largest stream frame accepted (default 8 MiB).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = Some(bytes);
        self
    }

    /// The clock signers read (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The client.
    pub fn build(self) -> Result<Client> {
        Ok(Client {
            inner: Arc::new(Inner {
                transport: Transport::new(self.transport)?,
                settings: self.settings,
                use_env: !self.no_env,
                providers: Mutex::new(HashMap::new()),
                max_frame: self.max_frame.unwrap_or(DEFAULT_MAX_FRAME),
                clock: self.clock.unwrap_or_default(),
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    settings: HashMap<String, ProviderSettings>,
    use_env: bool,
    providers: Mutex<HashMap<&'static str, Arc<dyn Provider>>>,
    max_frame: usize,
    clock: Clock,
}

/// Calls any registered provider. Cheap to clone (shared connection pool).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client that reads provider settings from the environment.
    pub fn from_env() -> Result<Client> {
        Client::builder().build()
    }

    /// The provider for `id`, built on first use from settings and environment.
    pub fn provider(&self, id: &str) -> Result<Arc<dyn Provider>> {
        let spec = providers::spec(id)?;
        let mut cache = self
            .inner
            .providers
            .lock()
            .map_err(|_| Error::new(ErrorKind::Internal, "provider cache poisoned"))?;
        if let Some(p) = cache.get(spec.id) {
            return Ok(p.clone());
        }
        let mut settings = if self.inner.use_env {
            ProviderSettings::from_env(spec)
        } else {
            ProviderSettings::default()
        };
        if let Some(explicit) = self.inner.settings.get(spec.id) {
            if explicit.base_url.is_some() {
                settings.base_url.clone_from(&explicit.base_url);
            }
            if explicit.region.is_some() {
                settings.region.clone_from(&explicit.region);
            }
            for (k, v) in &explicit.credentials {
                settings.credentials.insert(k.clone(), v.clone());
            }
        }
        let provider = (spec.build)(spec, settings)?;
        cache.insert(spec.id, provider.clone());
        Ok(provider)
    }

    /// Resolves `provider/model` to the provider and the upstream model name.
    pub fn resolve<'a>(&self, model: &'a str) -> Result<(Arc<dyn Provider>, &'a str)> {
        let (pid, m) = providers::split_model(model)?;
        Ok((self.provider(pid)?, m))
    }

    fn route(&self, req: &mut ChatRequest) -> Result<Arc<dyn Provider>> {
        let (provider, model) = self.resolve(&req.model)?;
        req.model = model.to_owned();
        Ok(provider)
    }

    /// A complete answer. `req.model` is `provider/model`.
    pub async fn chat(&self, mut req: ChatRequest) -> Result<ChatResponse> {
        let provider = self.route(&mut req)?;
        self.chat_with(provider.as_ref(), &req).await
    }

    /// A streamed answer. `req.model` is `provider/model`.
    pub async fn chat_stream(&self, mut req: ChatRequest) -> Result<ChatStream> {
        let provider = self.route(&mut req)?;
        self.stream_with(provider.as_ref(), &req).await
    }

    /// Embeddings. `req.model` is `provider/model`.
    pub async fn embed(&self, mut req: EmbeddingRequest) -> Result<EmbeddingResponse> {
        let (provider, model) = self.resolve(&req.model)?;
        req.model = model.to_owned();
        self.embed_with(provider.as_ref(), &req).await
    }

    fn auth_context(&self) -> AuthContext {
        AuthContext {
            clock: self.inner.clock.clone(),
            transport: self.inner.transport.clone(),
        }
    }

    /// The clock signers read (shared by every provider of this client).
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// After a failed first attempt: syncs the clock on a skew rejection, or refreshes a
    /// rejected token. True when one more attempt makes sense.
    fn recover_auth(&self, provider: &dyn Provider, err: &Error, headers: &HeaderMap) -> bool {
        if err.is_clock_skew() {
            let date = headers
                .get(::http::header::DATE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| httpdate::parse_http_date(v).ok());
            if let Some(server_now) = date {
                let offset = self.inner.clock.sync_to(server_now);
                tracing::warn!(
                    provider = provider.id(),
                    offset_ms = offset,
                    "the upstream rejected our timestamp as skewed; synced the clock to its Date header and retrying once"
                );
                return true;
            }
            return false;
        }
        if err.kind() == ErrorKind::Authentication && provider.invalidate_credentials() {
            tracing::info!(
                provider = provider.id(),
                "credential rejected; refreshing it and retrying once"
            );
            return true;
        }
        false
    }

    /// Builds, authorizes and sends; on a 2xx returns the unread response. A clock-skew or
    /// token rejection is retried once.
    async fn exchange<F>(&self, provider: &dyn Provider, build: F) -> Result<StreamingResponse>
    where
        F: Fn() -> Result<HttpRequest>,
    {
        let id = provider.id();
        let ctx = self.auth_context();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = provider.authorize(build()?, &ctx).await?;
            let resp = self
                .inner
                .transport
                .send(req)
                .await
                .map_err(|e| e.with_provider(id))?;
            if (200..300).contains(&resp.status) {
                return Ok(resp);
            }
            let r = resp.collect().await.map_err(|e| e.with_provider(id))?;
            let err = provider.classify_error(r.status, &r.headers, &r.body);
            if attempt == 1 && self.recover_auth(provider, &err, &r.headers) {
                continue;
            }
            return Err(err);
        }
    }

    /// Sends and reads a whole 2xx body, then `parse`s it; errors found by `parse` (a vendor
    /// error in a 200) get the same single auth recovery as status errors.
    async fn exchange_parsed<T, F, P>(
        &self,
        provider: &dyn Provider,
        build: F,
        parse: P,
    ) -> Result<T>
    where
        F: Fn() -> Result<HttpRequest>,
        P: Fn(&HttpResponse) -> Result<T>,
    {
        let id = provider.id();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self.exchange(provider, &build).await?;
            let full = resp.collect().await.map_err(|e| e.with_provider(id))?;
            match parse(&full) {
                Err(err) if attempt == 1 && self.recover_auth(provider, &err, &full.headers) => {
                    continue
                }
                other => return other,
            }
        }
    }

    /// A complete answer from a given provider; `req.model` is the upstream model name.
    pub async fn chat_with(
        &self,
        provider: &dyn Provider,
        req: &ChatRequest,
    ) -> Result<ChatResponse> {
        tracing::debug!(provider = provider.id(), model = %req.model, "sending chat request");
        if provider.framing() == Framing::WebSocket {
            return collect_stream(self.stream_with(provider, req).await?).await;
        }
        let mut out = self
            .exchange_parsed(
                provider,
                || provider.build_chat(req, false),
                |r| provider.parse_chat(r),
            )
            .await?;
        if out.model.is_empty() {
            out.model.clone_from(&req.model);
        }
        Ok(out)
    }

    /// Embeddings from a given provider; `req.model` is the upstream model name.
    pub async fn embed_with(
        &self,
        provider: &dyn Provider,
        req: &EmbeddingRequest,
    ) -> Result<EmbeddingResponse> {
        let mut out = self
            .exchange_parsed(
                provider,
                || provider.build_embeddings(req),
                |r| provider.parse_embeddings(r),
            )
            .await?;
        if out.model.is_empty() {
            out.model.clone_from(&req.model);
        }
        Ok(out)
    }

    /// The models a provider lists over its API.
    pub async fn models(&self, provider_id: &str) -> Result<Vec<ModelInfo>> {
        let p = self.provider(provider_id)?;
        self.exchange_parsed(p.as_ref(), || p.build_models(), |r| p.parse_models(r))
            .await
    }

    /// A streamed answer from a given provider; `req.model` is the upstream model name.
    ///
    /// Returns once the response head arrived; errors before that (status, auth) are returned
    /// here, errors after it end the stream with an `Err` item. Dropping the stream drops the
    /// upstream connection.
    pub async fn stream_with(
        &self,
        provider: &dyn Provider,
        req: &ChatRequest,
    ) -> Result<ChatStream> {
        let id = provider.id();
        if !provider.capabilities().streaming {
            return Err(Error::unsupported(format!("{id} does not stream")).with_provider(id));
        }
        tracing::debug!(provider = id, model = %req.model, "sending streaming chat request");
        let framing = provider.framing();
        if framing == Framing::WebSocket {
            return crate::ws::open(
                provider,
                req,
                &self.auth_context(),
                self.inner.max_frame,
                self.inner.transport.config().connect_timeout,
                |p, e, h| self.recover_auth(p, e, h),
            )
            .await;
        }
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let resp = self
                .exchange(provider, || provider.build_chat(req, true))
                .await?;
            if !resp.content_type().starts_with("application/json") {
                break resp;
            }
            // A plain body where a stream was asked for: an error in a 200, or a whole answer.
            let r = resp.collect().await.map_err(|e| e.with_provider(id))?;
            match provider.parse_chat(&r) {
                Err(err) if attempt == 1 && self.recover_auth(provider, &err, &r.headers) => {
                    continue
                }
                Err(err) => return Err(err),
                Ok(mut full) => {
                    if full.model.is_empty() {
                        full.model.clone_from(&req.model);
                    }
                    let events: Vec<Result<StreamEvent>> =
                        response_to_events(&full).into_iter().map(Ok).collect();
                    return Ok(Box::pin(futures::stream::iter(events)));
                }
            }
        };
        let header_rid = providers::header_request_id(&resp.headers);
        let parser = provider.stream_parser(req);
        let body = resp.bytes_stream();
        Ok(drive(
            id,
            framing,
            body,
            parser,
            self.inner.max_frame,
            req.model.clone(),
            header_rid,
        ))
    }
}

/// One decoder for whichever framing the body uses.
enum Decoder {
    Sse(SseDecoder),
    Ndjson(NdjsonDecoder),
}

impl Decoder {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<Frame>) -> Result<()> {
        match self {
            Decoder::Sse(d) => d.push(chunk, out),
            Decoder::Ndjson(d) => d.push(chunk, out),
        }
    }

    fn finish(&mut self) -> Tail {
        match self {
            Decoder::Sse(d) => d.finish(),
            Decoder::Ndjson(d) => d.finish(),
        }
    }
}

/// Bytes → frames → events, ending with the parser's verdict on how the body ended.
fn drive(
    id: &'static str,
    framing: Framing,
    body: impl futures::Stream<Item = Result<bytes::Bytes>> + Send + 'static,
    mut parser: Box<dyn StreamParser>,
    max_frame: usize,
    model: String,
    header_rid: Option<String>,
) -> ChatStream {
    let mut decoder = match framing {
        Framing::Ndjson => Decoder::Ndjson(NdjsonDecoder::new(max_frame)),
        Framing::Sse | Framing::WebSocket => Decoder::Sse(SseDecoder::new(max_frame)),
    };
    let stream = async_stream::try_stream! {
        let mut frames = Vec::new();
        let mut events = Vec::new();
        futures::pin_mut!(body);
        let mut done = false;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| e.with_provider(id))?;
            decoder.push(&chunk, &mut frames).map_err(|e| e.with_provider(id))?;
            for frame in frames.drain(..) {
                parser.on_frame(&frame, &mut events)?;
                if parser.is_done() {
                    done = true;
                    break;
                }
            }
            for ev in events.drain(..) {
                yield fill_started(ev, &model, &header_rid);
            }
            if done {
                break;
            }
        }
        if !done {
            if let Some(frame) = decoder.finish().frame {
                parser.on_frame(&frame, &mut events)?;
            }
        }
        parser.finish(&mut events)?;
        for ev in events.drain(..) {
            yield fill_started(ev, &model, &header_rid);
        }
    };
    Box::pin(stream)
}

fn fill_started(ev: StreamEvent, model: &str, header_rid: &Option<String>) -> StreamEvent {
    match ev {
        StreamEvent::Started {
            mut id,
            model: m,
            request_id,
        } => {
            let request_id = request_id.or_else(|| header_rid.clone());
            if id.is_empty() {
                id = request_id.clone().unwrap_or_default();
            }
            StreamEvent::Started {
                id,
                model: if m.is_empty() { model.to_owned() } else { m },
                request_id,
            }
        }
        other => other,
    }
}

/// Collects a stream into a complete response (checks the stream invariants).
pub async fn collect_stream(mut stream: ChatStream) -> Result<ChatResponse> {
    let mut acc = crate::stream::StreamAccumulator::new();
    while let Some(ev) = stream.next().await {
        acc.push(&ev?)?;
    }
    acc.finish()
}
