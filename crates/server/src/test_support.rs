//! Helpers for the crate's tests that need a real PostgreSQL behind a connection that can be
//! made to stall.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The PostgreSQL database tests may use, or `None` (saying SKIPPED) without one.
pub(crate) fn postgres_url() -> Option<String> {
    let url = std::env::var("SWITCHYARD_TEST_POSTGRES_URL").ok();
    if url.is_none() {
        eprintln!("SKIPPED: set SWITCHYARD_TEST_POSTGRES_URL to a PostgreSQL database");
    }
    url
}

/// A store on the database at `url` (`postgres://USER:PASS@HOST:PORT/DB`) reached through a
/// [`silenceable_proxy`], and the switch that silences it.
pub(crate) async fn postgres_behind_a_silenceable_proxy(
    url: &str,
) -> (switchyard_store::AnyStore, Arc<AtomicBool>) {
    let (head, rest) = url
        .split_once('@')
        .expect("postgres://USER:PASS@HOST:PORT/DB");
    let (authority, tail) = rest.split_once('/').expect("a database name");
    let silent = Arc::new(AtomicBool::new(false));
    let proxy = silenceable_proxy(authority.to_owned(), silent.clone()).await;
    let store = switchyard_store::connect(&format!("{head}@{proxy}/{tail}"))
        .await
        .expect("connect through the proxy");
    (store, silent)
}

/// A TCP proxy to `target` that, once `silent` is set, passes nothing more on any
/// connection, old or new, and never closes one: a database behind a partition, or one
/// whose connections died without a reset reaching the client.
pub(crate) async fn silenceable_proxy(
    target: String,
    silent: Arc<AtomicBool>,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        silent: Arc<AtomicBool>,
    ) {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if silent.load(std::sync::atomic::Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                continue;
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pump(ri, wo, silent.clone()));
            tokio::spawn(pump(ro, wi, silent.clone()));
        }
    });
    addr
}
