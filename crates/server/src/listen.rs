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
                Err(e) => {
                    // Out of file descriptors, most often: let connections close first.
                    tracing::warn!(error = %e, "cannot accept a connection; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
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

/// Middleware: reads the request's body within [`BODY_READ_TIMEOUT`] (or what [`serve_with`]
/// was given; 408 otherwise) and
/// refuses one declared or found larger than the route's limit (413) before the handler runs.
/// Handlers take their bodies whole, so nothing is lost by reading it here.
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
    let within = req
        .extensions()
        .get::<ReadTimeouts>()
        .map_or(BODY_READ_TIMEOUT, |t| t.body);
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(within, axum::body::to_bytes(body, limit)).await;
    let bytes = match read {
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the request body did not arrive within {:.1} s",
                    within.as_secs_f64()
                ),
            )
            .into_response();
        }
        Ok(Err(e)) if is_length_limit(&e) => return too_large(limit),
        Ok(Err(e)) => {
            return ApiError::bad(format!("cannot read the request body: {e}")).into_response();
        }
        Ok(Ok(bytes)) => bytes,
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
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

/// Whether reading a body failed on its length limit (axum wraps http-body-util's error).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.to_string().contains("length limit exceeded") {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A server with short read timeouts and one route that takes a body; stopped when the
    /// returned sender is dropped.
    async fn server() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let app = Router::new()
            .route(
                "/v1/echo",
                axum::routing::post(
                    |body: axum::body::Bytes| async move { body.len().to_string() },
                ),
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
