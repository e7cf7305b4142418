//! A minimal HTTP/1 server on tokio: accept, serve each connection with a handler, stop
//! when the returned handle is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A response body: always complete, never streamed.
pub type Body = Full<Bytes>;

/// A running server; dropping it closes the listener and stops accepting.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `handler` on `listener` (already bound, so bind errors surface to the caller).
pub fn serve<H, F>(listener: TcpListener, handler: H) -> std::io::Result<Server>
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let addr = listener.local_addr()?;
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::debug!(%addr, "accept failed: {err}");
                    continue;
                }
            };
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = handler(req);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                let served = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(err) = served {
                    tracing::debug!(%addr, "connection ended: {err}");
                }
            });
        }
    });
    Ok(Server { addr, task })
}

/// A response with `code`, content type and body.
pub fn respond(
    code: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A plain-text response.
pub fn text(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(code, "text/plain; charset=utf-8", body)
}

/// A JSON response.
pub fn json(code: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut text = body.to_string();
    text.push('\n');
    respond(code, "application/json", text)
}
