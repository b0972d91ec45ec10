//! The client: resolves `provider/model`, builds providers from settings or the environment,
//! sends through [`Transport`], and turns response bodies into events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use crate::codec::{SseDecoder, DEFAULT_MAX_FRAME};
use crate::error::{Error, ErrorKind, Result};
use crate::http::{HttpResponse, Transport, TransportConfig};
use crate::providers::{self, Provider, ProviderSettings};
use crate::stream::{response_to_events, ChatStream, StreamEvent};
use crate::types::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, ModelInfo};

/// Builds a [`Client`].
#[derive(Debug, Default)]
pub struct ClientBuilder {
    settings: HashMap<String, ProviderSettings>,
    no_env: bool,
    transport: TransportConfig,
    max_frame: Option<usize>,
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

    /// The client.
    pub fn build(self) -> Result<Client> {
        Ok(Client {
            inner: Arc::new(Inner {
                transport: Transport::new(self.transport)?,
                settings: self.settings,
                use_env: !self.no_env,
                providers: Mutex::new(HashMap::new()),
                max_frame: self.max_frame.unwrap_or(DEFAULT_MAX_FRAME),
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

    /// The models a provider lists over its API.
    pub async fn models(&self, provider_id: &str) -> Result<Vec<ModelInfo>> {
        let p = self.provider(provider_id)?;
        let resp = self.send_collect(p.as_ref(), p.build_models()?).await?;
        p.parse_models(&resp)
    }

    async fn send_collect(
        &self,
        provider: &dyn Provider,
        req: crate::http::HttpRequest,
    ) -> Result<HttpResponse> {
        let resp = self
            .inner
            .transport
            .send(req)
            .await
            .map_err(|e| e.with_provider(provider.id()))?
            .collect()
            .await
            .map_err(|e| e.with_provider(provider.id()))?;
        if !(200..300).contains(&resp.status) {
            return Err(provider.classify_error(resp.status, &resp.headers, &resp.body));
        }
        Ok(resp)
    }

    /// A complete answer from a given provider; `req.model` is the upstream model name.
    pub async fn chat_with(
        &self,
        provider: &dyn Provider,
        req: &ChatRequest,
    ) -> Result<ChatResponse> {
        let http_req = provider.build_chat(req, false)?;
        tracing::debug!(provider = provider.id(), model = %req.model, "sending chat request");
        let resp = self.send_collect(provider, http_req).await?;
        let mut out = provider.parse_chat(&resp)?;
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
        let http_req = provider.build_embeddings(req)?;
        let resp = self.send_collect(provider, http_req).await?;
        let mut out = provider.parse_embeddings(&resp)?;
        if out.model.is_empty() {
            out.model.clone_from(&req.model);
        }
        Ok(out)
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
        let http_req = provider.build_chat(req, true)?;
        tracing::debug!(provider = id, model = %req.model, "sending streaming chat request");
        let resp = self
            .inner
            .transport
            .send(http_req)
            .await
            .map_err(|e| e.with_provider(id))?;
        let header_rid = providers::header_request_id(&resp.headers);
        if !(200..300).contains(&resp.status) {
            let r = resp.collect().await.map_err(|e| e.with_provider(id))?;
            return Err(provider.classify_error(r.status, &r.headers, &r.body));
        }
        let model = req.model.clone();
        if resp.content_type().starts_with("application/json") {
            // A plain body where a stream was asked for: an error in a 200, or a whole answer.
            let r = resp.collect().await.map_err(|e| e.with_provider(id))?;
            let mut full = provider.parse_chat(&r)?;
            if full.model.is_empty() {
                full.model = model;
            }
            let events: Vec<Result<StreamEvent>> =
                response_to_events(&full).into_iter().map(Ok).collect();
            return Ok(Box::pin(futures::stream::iter(events)));
        }
        let mut parser = provider.stream_parser(req);
        let max_frame = self.inner.max_frame;
        let body = resp.bytes_stream();
        let stream = async_stream::try_stream! {
            let mut decoder = SseDecoder::new(max_frame);
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
                let tail = decoder.finish();
                if let Some(frame) = tail.frame {
                    parser.on_frame(&frame, &mut events)?;
                }
            }
            parser.finish(&mut events)?;
            for ev in events.drain(..) {
                yield fill_started(ev, &model, &header_rid);
            }
        };
        Ok(Box::pin(stream))
    }
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
