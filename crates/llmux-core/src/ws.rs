//! The WebSocket sender: opens a signed connection, sends the request frame, and turns the
//! text messages that come back into a [`ChatStream`] through the provider's stream parser.
//! Next to `http.rs`, the only other code that talks to the network.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use http::HeaderMap;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::codec::Frame;
use crate::error::{Error, ErrorKind, Result};
use crate::providers::{AuthContext, Provider};
use crate::stream::{ChatStream, StreamEvent};
use crate::types::ChatRequest;

/// Opens a WebSocket chat of `req` for the upstream `model`; a skewed-clock or
/// rejected-credential handshake is retried once when `recover` says so.
pub(crate) async fn open(
    provider: &dyn Provider,
    model: &str,
    req: &ChatRequest,
    ctx: &AuthContext,
    max_frame: usize,
    connect_timeout: Duration,
    recover: impl Fn(&dyn Provider, &Error, &HeaderMap) -> bool,
) -> Result<ChatStream> {
    let id = provider.id();
    let mut attempt = 0;
    let (mut socket, message) = loop {
        attempt += 1;
        let ws = provider.build_ws(model, req, ctx)?;
        let mut request = ws.url.as_str().into_client_request().map_err(|e| {
            Error::config(format!("{id}: invalid WebSocket URL"))
                .with_provider(id)
                .with_source(e)
        })?;
        request.headers_mut().extend(ws.headers);
        let connect = tokio_tungstenite::connect_async(request);
        let outcome = tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    "the WebSocket handshake did not finish in time",
                )
                .with_provider(id)
            })?;
        match outcome {
            Ok((socket, _)) => break (socket, ws.message),
            Err(tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp.body().clone().unwrap_or_default();
                let err = provider.classify_error(status, &headers, &body);
                if attempt == 1 && recover(provider, &err, &headers) {
                    continue;
                }
                return Err(err);
            }
            Err(e) => {
                return Err(
                    Error::new(ErrorKind::Connect, "could not open the WebSocket")
                        .with_provider(id)
                        .with_source(e),
                );
            }
        }
    };
    socket
        .send(Message::Text(message.into()))
        .await
        .map_err(|e| {
            Error::new(ErrorKind::Connect, "could not send the request frame")
                .with_provider(id)
                .with_source(e)
        })?;
    let mut parser = provider.stream_parser(model, req);
    let model = model.to_owned();
    let stream = async_stream::try_stream! {
        let mut events = Vec::new();
        while let Some(msg) = socket.next().await {
            let text = match msg {
                Ok(Message::Text(t)) => t.to_string(),
                Ok(Message::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(e) => {
                    if parser.is_done() {
                        break;
                    }
                    Err(Error::new(ErrorKind::UpstreamProtocol, "the WebSocket was closed in the middle of the answer")
                        .with_provider(id)
                        .with_source(e))?;
                    break;
                }
            };
            if text.len() > max_frame {
                Err(Error::protocol(format!("WebSocket message larger than {max_frame} bytes")).with_provider(id))?;
            }
            parser.on_frame(&Frame::data(text), &mut events)?;
            for ev in events.drain(..) {
                yield fill_model(ev, &model);
            }
            if parser.is_done() {
                let _ = socket.close(None).await;
                break;
            }
        }
        parser.finish(&mut events)?;
        for ev in events.drain(..) {
            yield fill_model(ev, &model);
        }
    };
    Ok(Box::pin(stream))
}

fn fill_model(ev: StreamEvent, model: &str) -> StreamEvent {
    match ev {
        StreamEvent::Started {
            id,
            model: m,
            request_id,
        } if m.is_empty() => StreamEvent::Started {
            id,
            model: model.to_owned(),
            request_id,
        },
        other => other,
    }
}
