//! The HTTP face of the fake API server: routing, LIST with pages, WATCH as a JSON-lines stream.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::events;
use super::selector::{FieldSelector, LabelSelector};
use super::state::{Access, Change, State, status};
use super::{Inner, Kind};

type Body = BoxBody<Bytes, io::Error>;
type Chunk = Result<Frame<Bytes>, io::Error>;

/// Accepts connections, one task per connection (HTTP/1.1, keep-alive), except while the
/// server is gone: then the listener is closed, and opened again on the same address after.
pub async fn serve(listener: TcpListener, inner: Arc<Inner>) {
    let address = listener.local_addr().expect("a bound listener");
    let mut wake = inner.wake.subscribe();
    let mut listener = Some(listener);
    loop {
        if inner.lock().gone {
            listener = None;
            let _ = wake.changed().await;
            continue;
        }
        let Some(open) = listener.take() else {
            listener = Some(listen_again(address).await);
            continue;
        };
        tokio::select! {
            accepted = open.accept() => {
                if let Ok((stream, _)) = accepted {
                    serve_connection(stream, Arc::clone(&inner));
                }
            }
            _ = wake.changed() => {}
        }
        listener = Some(open);
    }
}

/// Binds `address` again after the server was gone (retrying while the port is busy).
async fn listen_again(address: std::net::SocketAddr) -> TcpListener {
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn serve_connection(stream: tokio::net::TcpStream, inner: Arc<Inner>) {
    tokio::spawn(async move {
        let service = service_fn(move |req| {
            let inner = Arc::clone(&inner);
            async move {
                // A request on a connection kept alive from before the server went: the
                // connection is cut without an answer.
                if inner.lock().gone {
                    return Err(io::Error::from(io::ErrorKind::ConnectionReset));
                }
                Ok(handle(&inner, req).await)
            }
        });
        // A dropped watch ends its connection with an error; nothing to report.
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
}

/// Notes what the request asks for, as an authorizer would see it.
fn record_access(inner: &Inner, req: &Request<Incoming>) {
    let watch = req.uri().query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
    });
    if let Some(access) = Access::of(req.method().as_str(), req.uri().path(), watch) {
        inner.lock().requests.insert(access);
    }
}

/// Event creation needs the request body; everything else is routed on the head alone.
async fn handle(inner: &Arc<Inner>, req: Request<Incoming>) -> Response<Body> {
    record_access(inner, &req);
    let Some(namespace) = events::namespace_of(req.uri().path()).map(str::to_owned) else {
        return route(inner, &req);
    };
    if req.method() != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only POST (create) of events is modelled",
        );
    }
    let Ok(body) = req.into_body().collect().await else {
        return error(StatusCode::BAD_REQUEST, "BadRequest", "unreadable body");
    };
    let mut state = inner.lock();
    state.event_posts += 1;
    if state.unavailable {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        );
    }
    let (code, answer) = events::create(&mut state, &namespace, &body.to_bytes());
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &answer,
    )
}

fn route(inner: &Arc<Inner>, req: &Request<Incoming>) -> Response<Body> {
    let Some(kind) = Kind::from_path(req.uri().path()) else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    if req.method() != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only GET is modelled",
        );
    }
    let query: HashMap<String, String> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    {
        let mut state = inner.lock();
        let counters = state.counters(kind);
        if watch {
            counters.watches += 1;
        } else {
            counters.lists += 1;
        }
        if state.unavailable || state.unavailable_kinds.contains(&kind) {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            );
        }
        if state.not_served.contains(&kind) {
            return error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
    }
    let selectors = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .and_then(|l| {
            FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
                .map(|f| (l, f))
        });
    let (labels, fields) = match selectors {
        Ok(s) => s,
        Err(message) => return error(StatusCode::BAD_REQUEST, "BadRequest", &message),
    };
    if watch {
        start_watch(inner, kind, &query, labels, fields)
    } else {
        list(inner, kind, &query, &labels, &fields)
    }
}

/// LIST: the matching objects at the current resourceVersion, `limit` at a time; later
/// pages come from the state of the first one, as etcd serves them.
fn list(
    inner: &Inner,
    kind: Kind,
    query: &HashMap<String, String>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Response<Body> {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let mut state = inner.lock();
    let (rv, mut items): (u64, VecDeque<Value>) = match query
        .get("continue")
        .filter(|c| !c.is_empty())
    {
        Some(token) => match state.pages.remove(token) {
            Some(pages) if pages.kind == kind => (pages.rv, pages.items),
            _ => {
                return error(
                    StatusCode::GONE,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result.",
                );
            }
        },
        None => (state.rv, state.matching(kind, labels, fields).into()),
    };
    let page: Vec<Value> = match limit {
        Some(limit) if items.len() > limit => items.drain(..limit).collect(),
        _ => items.drain(..).collect(),
    };
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if !items.is_empty() {
        metadata["remainingItemCount"] = json!(items.len());
        metadata["continue"] = json!(state.park_pages(kind, rv, items));
    }
    let body = json!({
        "apiVersion": kind.api_version(),
        "kind": format!("{}List", kind.name()),
        "metadata": metadata,
        "items": page,
    });
    json_response(StatusCode::OK, &body)
}

/// What one WATCH request asked for.
struct WatchSpec {
    kind: Kind,
    labels: LabelSelector,
    fields: FieldSelector,
    /// `None` for "" and "0": start with ADDED events for the current objects.
    from: Option<u64>,
    bookmarks: bool,
    deadline: Option<Instant>,
}

fn start_watch(
    inner: &Arc<Inner>,
    kind: Kind,
    query: &HashMap<String, String>,
    labels: LabelSelector,
    fields: FieldSelector,
) -> Response<Body> {
    let from = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "invalid resourceVersion",
                );
            }
        },
    };
    if query.get("sendInitialEvents").is_some_and(|v| v == "true") {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "streaming lists are not modelled",
        );
    }
    let spec = WatchSpec {
        kind,
        labels,
        fields,
        from,
        bookmarks: query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true"),
        deadline: query
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(|t| Instant::now() + Duration::from_secs(t)),
    };
    let (tx, rx) = mpsc::channel::<Chunk>(64);
    tokio::spawn(run_watch(Arc::clone(inner), spec, tx));
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .body(BoxBody::new(StreamBody::new(chunks)))
        .unwrap()
}

/// What a watch does next.
enum Step {
    /// End the connection without the final chunk (a dropped connection).
    Abort,
    /// Send nothing: the stream is stalled.
    Stalled,
    /// Send these lines; end the response afterwards if `end`.
    Send { lines: Vec<Bytes>, end: bool },
}

/// Where one watch stands.
struct Cursor {
    /// `State::drops` when the watch began.
    drops: u64,
    /// `State::bookmark_requests` last answered.
    bookmarks: u64,
    /// The resourceVersion up to which events have been sent.
    rv: u64,
    /// Synthetic ADDED events still to send (a watch without resourceVersion).
    initial: Option<Vec<Value>>,
}

async fn run_watch(inner: Arc<Inner>, spec: WatchSpec, tx: mpsc::Sender<Chunk>) {
    let mut wake = inner.wake.subscribe();
    let mut cursor = {
        let mut state = inner.lock();
        state.counters(spec.kind).open_watches += 1;
        Cursor {
            drops: state.drops,
            bookmarks: state.bookmark_requests,
            rv: spec.from.unwrap_or(state.rv),
            initial: spec
                .from
                .is_none()
                .then(|| state.matching(spec.kind, &spec.labels, &spec.fields)),
        }
    };
    let _open = OpenWatch {
        inner: Arc::clone(&inner),
        kind: spec.kind,
    };
    let far = Instant::now() + Duration::from_secs(24 * 3600);
    let deadline = spec.deadline.unwrap_or(far);
    loop {
        wake.borrow_and_update();
        let step = next_step(&mut inner.lock(), &spec, &mut cursor);
        let stalled = matches!(step, Step::Stalled);
        match step {
            Step::Abort => {
                let reset = io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "connection dropped by the test",
                );
                let _ = tx.send(Err(reset)).await;
                return;
            }
            Step::Stalled => {}
            Step::Send { lines, end } => {
                for line in lines {
                    if tx.send(Ok(Frame::data(line))).await.is_err() {
                        return;
                    }
                }
                if end {
                    return;
                }
            }
        }
        // A stalled watch is a black hole: not even its timeout ends it.
        let until = if stalled { far } else { deadline };
        tokio::select! {
            _ = wake.changed() => {}
            () = tx.closed() => return,
            () = tokio::time::sleep_until(until) => return,
        }
    }
}

fn next_step(state: &mut State, spec: &WatchSpec, cursor: &mut Cursor) -> Step {
    let kind = spec.kind;
    if state.drops != cursor.drops
        || state.gone
        || state.unavailable
        || state.unavailable_kinds.contains(&kind)
    {
        return Step::Abort;
    }
    if state.stalled {
        return Step::Stalled;
    }
    let mut lines = Vec::new();
    for object in cursor.initial.take().unwrap_or_default() {
        lines.push(event_line("ADDED", &object));
    }
    if cursor.rv < state.compacted {
        let message = format!(
            "too old resource version: {} ({})",
            cursor.rv, state.compacted
        );
        lines.push(event_line("ERROR", &status(410, "Expired", &message)));
        return Step::Send { lines, end: true };
    }
    let matches = |o: &Value| spec.labels.matches(o) && spec.fields.matches(o);
    let first = state.history.partition_point(|e| e.rv <= cursor.rv);
    for event in state.history.range(first..) {
        if event.kind != kind {
            continue;
        }
        let now = matches(&event.object);
        let before = event.previous.as_ref().is_some_and(&matches);
        // An object that stops matching the selector is DELETED for this watch, one that
        // starts matching is ADDED, as the API server reports them.
        let ty = match (event.change, before, now) {
            (Change::Added, _, true) | (Change::Modified, false, true) => "ADDED",
            (Change::Modified, true, true) => "MODIFIED",
            (Change::Modified, true, false) | (Change::Deleted, true, _) => "DELETED",
            _ => continue,
        };
        lines.push(event_line(ty, &event.object));
    }
    cursor.rv = cursor.rv.max(state.rv);
    if state.bookmark_requests != cursor.bookmarks {
        cursor.bookmarks = state.bookmark_requests;
        if spec.bookmarks {
            let bookmark = json!({
                "kind": kind.name(),
                "apiVersion": kind.api_version(),
                "metadata": { "resourceVersion": cursor.rv.to_string() },
            });
            lines.push(event_line("BOOKMARK", &bookmark));
            state.counters(kind).bookmarks_sent += 1;
        }
    }
    Step::Send { lines, end: false }
}

/// Decrements the kind's open-watch gauge when the watch ends.
struct OpenWatch {
    inner: Arc<Inner>,
    kind: Kind,
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        let counters = state.counters(self.kind);
        counters.open_watches = counters.open_watches.saturating_sub(1);
    }
}

fn event_line(ty: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({ "type": ty, "object": object })).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

fn error(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status(code.as_u16(), reason, message))
}

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap());
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(bytes).map_err(|never| match never {}).boxed())
        .unwrap()
}
