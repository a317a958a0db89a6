//! Serving HTTP with time limits on what a client sends. `axum::serve` waits for a request's
//! headers and body as long as the client likes, so anyone who can open a connection (no token
//! needed) could hold thousands of them open; here a request's headers must arrive within
//! [`HEADER_READ_TIMEOUT`] and its body within [`BODY_READ_TIMEOUT`], and a body whose declared
//! length is over the limit is refused before it is sent.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http::ApiError;

/// How long a connection may take to send a request's headers (once it has begun one, or
/// while it sits idle between requests).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request's body may take to arrive, from when its headers did: an agent's
/// largest log push (16 MiB) at half a megabyte a second.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may take to send a request: the defaults are [`HEADER_READ_TIMEOUT`] and
/// [`BODY_READ_TIMEOUT`] (tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct ReadTimeouts {
    pub headers: Duration,
    pub body: Duration,
}

impl Default for ReadTimeouts {
    fn default() -> Self {
        ReadTimeouts {
            headers: HEADER_READ_TIMEOUT,
            body: BODY_READ_TIMEOUT,
        }
    }
}

/// Serves `app` on `listener` until `signal` resolves; then stops accepting, lets every open
/// connection finish the request it is on, and returns once they have closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, signal, ReadTimeouts::default()).await
}

/// [`serve`] with other read timeouts.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    signal: impl Future<Output = ()> + Send + 'static,
    timeouts: ReadTimeouts,
) -> std::io::Result<()> {
    // The body's timeout reaches [`body_within_limits`] with each request.
    let app = app.layer(axum::Extension(timeouts));
    // Connections wait on `stop_rx` being dropped; the server waits for every `done_rx` clone.
    let (stop_tx, stop_rx) = watch::channel(());
    let (done_tx, done_rx) = watch::channel(());
    tokio::spawn(async move {
        signal.await;
        drop(stop_rx);
    });
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // One connection's trouble (reset or aborted before it was taken): the next.
                Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionRefused
                ) => continue,
                Err(e) => {
                    // Out of file descriptors, most often: let connections close first.
                    tracing::warn!(error = %e, "cannot accept a connection; retrying in 1 s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = stop_tx.closed() => break,
                    }
                }
            },
            () = stop_tx.closed() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let stop_tx = stop_tx.clone();
        let done_rx = done_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.headers);
            let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
            let served = tokio::select! {
                served = conn.as_mut() => Some(served),
                () = stop_tx.closed() => None,
            };
            let served = match served {
                Some(served) => served,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(done_rx);
        });
    }
    drop(listener);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// Middleware: gives the request's body [`BODY_READ_TIMEOUT`] (or what [`serve_with`] was
/// given) to arrive, from when its headers did, and refuses one declared larger than the
/// route's limit (413) at once. The body is read only when the handler reads it, after the
/// token and the route are checked: a request without a token costs nothing to refuse. A
/// handler that finds the time up answers 408 ([`is_timeout`]).
pub async fn body_within_limits(req: Request, next: Next) -> Response {
    let limit = body_limit(req.uri().path());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    // A compressed body would be read as garbled JSON ("expected value at line 1"): say why.
    // Requests without a body (a GET through a proxy that adds the header) are left alone.
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || (req.headers().contains_key(header::CONTENT_LENGTH) && declared.is_none_or(|n| n > 0));
    let encodings = req.headers().get_all(header::CONTENT_ENCODING);
    // Empty list items count for nothing (RFC 9110, 5.6.1).
    let compressed = encodings.iter().find(|e| {
        String::from_utf8_lossy(e.as_bytes())
            .split(',')
            .map(str::trim)
            .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
    });
    if has_body && let Some(encoding) = compressed {
        let shown: String = String::from_utf8_lossy(encoding.as_bytes())
            .chars()
            .take(64)
            .collect();
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!(
                "request bodies are read as sent: Content-Encoding `{shown}` is not supported \
                 (send the body uncompressed, without the header)"
            ),
        )
        .into_response();
    }
    let within = req
        .extensions()
        .get::<ReadTimeouts>()
        .map_or(BODY_READ_TIMEOUT, |t| t.body);
    let deadline = tokio::time::Instant::now() + within;
    let req = req.map(|body| {
        use futures_util::StreamExt as _;
        let chunks = body.into_data_stream();
        Body::from_stream(futures_util::stream::unfold(
            Some(chunks),
            move |chunks| async move {
                let mut chunks = chunks?;
                match tokio::time::timeout_at(deadline, chunks.next()).await {
                    Ok(Some(chunk)) => Some((chunk, Some(chunks))),
                    Ok(None) => None,
                    Err(_) => Some((Err(axum::Error::new(BodyTimeout(within))), None)),
                }
            },
        ))
    });
    next.run(req).await
}

/// A request body that did not arrive in time.
#[derive(Debug)]
pub struct BodyTimeout(Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {:.1} s",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyTimeout {}

/// Whether reading a body failed because it did not arrive in time.
pub fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if s.is::<BodyTimeout>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// What a handler answers when its body (the `what`, e.g. "request body") could not be read:
/// 408 when it did not arrive in time, 413 past `limit` bytes, 400 otherwise.
pub fn body_rejected(
    r: &axum::extract::rejection::BytesRejection,
    what: &str,
    limit: usize,
) -> ApiError {
    if is_timeout(r) {
        timed_out(r)
    } else if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the {what} is larger than {limit} bytes"),
        )
    } else {
        ApiError::bad(format!("cannot read the {what}: {r}"))
    }
}

/// The 408 a handler answers for a body that did not arrive in time.
pub fn timed_out(e: &(dyn std::error::Error + 'static)) -> ApiError {
    ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", body_error_text(e))
}

/// The innermost message of a body read error (axum wraps it twice).
fn body_error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

/// The largest body a path takes: agents push output in batches; everything else is small.
fn body_limit(path: &str) -> usize {
    if path.starts_with("/v1/agent/") {
        crate::agents::MAX_AGENT_BODY_BYTES
    } else {
        crate::api::MAX_BODY_BYTES
    }
}

fn too_large(limit: usize) -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the request body is larger than {limit} bytes"),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A server with short read timeouts and one route that takes a body; stopped when the
    /// returned sender is dropped.
    async fn server() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        type Body = Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>;
        let app = Router::new()
            .route(
                "/v1/echo",
                axum::routing::post(|body: Body| async move {
                    match body {
                        Ok(body) => Ok(body.len().to_string()),
                        Err(e) if is_timeout(&e) => Err(timed_out(&e)),
                        Err(e) => Err(ApiError::bad(e.to_string())),
                    }
                }),
            )
            // Refuses without reading the body, as a route does for a request without a token.
            .route(
                "/v1/refuse",
                axum::routing::post(|| async { StatusCode::UNAUTHORIZED }),
            )
            .layer(axum::middleware::from_fn(body_within_limits));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let timeouts = ReadTimeouts {
            headers: Duration::from_millis(300),
            body: Duration::from_millis(300),
        };
        tokio::spawn(serve_with(
            listener,
            app,
            async move {
                let _ = stopped.await;
            },
            timeouts,
        ));
        (addr, stop)
    }

    /// Sends `request` and reads until the server answers and closes, or 5 s pass.
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> (String, Duration) {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(request).await.expect("send");
        let started = Instant::now();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got)).await;
        (
            String::from_utf8_lossy(&got).into_owned(),
            started.elapsed(),
        )
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let (addr, _stop) = server().await;
        let (answer, took) = exchange(addr, b"GET /v1/echo HTTP/1.1\r\nHost: x\r\n").await;
        assert!(took < Duration::from_secs(4), "held {took:?}: {answer}");
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed() {
        let (addr, _stop) = server().await;
        let (answer, took) = exchange(
            addr,
            b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(took < Duration::from_secs(4), "kept open {took:?}");
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_gets_408() {
        let (addr, _stop) = server().await;
        let (answer, took) = exchange(
            addr,
            b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within 0.3 s"), "{answer}");
        assert!(took < Duration::from_secs(4), "{took:?}");
    }

    /// A compressed body is refused by name, whichever of several headers says so; a request
    /// without a body is left alone whatever its headers.
    #[tokio::test]
    async fn a_compressed_body_is_refused_with_415() {
        let (addr, _stop) = server().await;
        for (request, status) in [
            (
                &b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"[..],
                "415",
            ),
            (
                b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Encoding: identity\r\nContent-Encoding: br\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                "415",
            ),
            (
                b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Encoding: identity\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                "200",
            ),
            (
                b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                "200",
            ),
            (
                b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Encoding: identity, \r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                "200",
            ),
            (
                b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                "415",
            ),
        ] {
            let (answer, _) = exchange(addr, request).await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{}: {answer}",
                String::from_utf8_lossy(request)
            );
            if status == "415" {
                assert!(answer.contains("unsupported_encoding"), "{answer}");
            }
        }
    }

    /// The body is read only by a handler that reads it: a request refused first (no token)
    /// is answered at once, not after its body's time runs out.
    #[tokio::test]
    async fn a_refused_request_is_answered_without_waiting_for_its_body() {
        let (addr, _stop) = server().await;
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"POST /v1/refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            .await
            .expect("send");
        let mut got = [0u8; 12];
        conn.read_exact(&mut got).await.expect("an answer");
        // (A body read first would have run out of time: 408.)
        assert_eq!(&got, b"HTTP/1.1 401");
    }

    #[tokio::test]
    async fn a_body_declared_too_large_is_refused_before_it_is_sent() {
        let (addr, _stop) = server().await;
        let declared = crate::api::MAX_BODY_BYTES + 1;
        let (answer, _) = exchange(
            addr,
            format!(
                "POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        // A body in time and within the limit is the handler's.
        let (answer, _) = exchange(
            addr,
            b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\n5"),
            "{answer}"
        );
    }
}
