//! Serving a simulator's router over HTTP/1.1 on a local port.
//!
//! Like `axum::serve`, plus what the fault layer needs: an answer marked by a
//! [`Fault::Drop`](super::faults::Fault::Drop) is never written; its connection is closed
//! instead, so the client sees the link cut. Aborting the returned task stops accepting and
//! closes every open connection, as a stopped server would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

use super::faults::DroppedByFault;

/// The bound address (the real port when asked for port 0) and the server task.
pub type Served = (SocketAddr, JoinHandle<()>);

/// Binds `addr` (port 0 picks a free port) and serves `router` in a background task. `name`
/// ("zendesk") appears in errors and logs.
pub async fn serve(name: &'static str, router: Router, addr: SocketAddr) -> anyhow::Result<Served> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {name} simulator to {addr}"))?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("reading the {name} simulator's bound address"))?;
    let handle = tokio::spawn(accept(name, listener, router));
    Ok((bound, handle))
}

/// Accepts connections until aborted; the connections live in a `JoinSet` so they end with it.
async fn accept(name: &'static str, listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, router.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, simulator = name, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one connection; closes it without a word when an answer is marked dropped.
async fn connection(stream: TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    let cut = Arc::new(Notify::new());
    let service = {
        let cut = cut.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let (router, cut) = (router.clone(), cut.clone());
            async move {
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                if response.extensions().get::<DroppedByFault>().is_some() {
                    cut.notify_one();
                    // Never answer; the connection is dropped under this future.
                    std::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(response)
            }
        })
    };
    let served =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = served => {
            if let Err(error) = result {
                tracing::debug!(%error, "simulator connection ended with an error");
            }
        }
        // Dropping `served` closes the socket before anything of the answer is written.
        () = cut.notified() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::faults::{Fault, FaultSpec, Faults, VendorErrors};
    use axum::extract::{Request, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Plain;

    impl VendorErrors for Plain {
        fn rate_limited(&self, _retry_after_secs: u64) -> Response {
            StatusCode::TOO_MANY_REQUESTS.into_response()
        }
        fn status(&self, status: u16) -> Response {
            StatusCode::from_u16(status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response()
        }
    }

    async fn gated(State(faults): State<Arc<Faults>>, request: Request) -> Response {
        match faults.admit(request.uri().path(), &Plain).await {
            Ok(()) => "hello".into_response(),
            Err(refused) => refused,
        }
    }

    async fn start() -> (Arc<Faults>, Served) {
        let faults = Arc::new(Faults::default());
        let router = Router::new().fallback(gated).with_state(faults.clone());
        let served = serve("test", router, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("serve");
        (faults, served)
    }

    /// Sends one raw request and reads until the server closes the connection.
    async fn raw_exchange(addr: SocketAddr) -> Vec<u8> {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /x HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        // A reset instead of an orderly close is as good: nothing was answered.
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection");
        answer
    }

    #[tokio::test]
    async fn a_drop_fault_closes_the_connection_without_an_answer() {
        let (faults, (addr, server)) = start().await;
        faults.inject(FaultSpec {
            fault: Fault::Drop,
            count: 1,
            path: None,
        });
        assert!(raw_exchange(addr).await.is_empty(), "no byte of an answer");
        let answer = String::from_utf8(raw_exchange(addr).await).expect("text");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "then it answers: {answer}"
        );
        assert!(answer.ends_with("hello"), "{answer}");
        server.abort();
    }

    #[tokio::test]
    async fn a_client_sees_a_dropped_request_fail_and_the_next_succeed() {
        let (faults, (addr, server)) = start().await;
        faults.inject(FaultSpec {
            fault: Fault::Drop,
            count: 1,
            path: Some("/tickets".into()),
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let url = format!("http://{addr}/tickets");
        let failed = http.get(&url).send().await;
        assert!(failed.is_err(), "dropped: {failed:?}");
        let ok = http.get(&url).send().await.expect("answered");
        assert_eq!(ok.status(), reqwest::StatusCode::OK);
        server.abort();
    }

    #[tokio::test]
    async fn an_answer_marked_dropped_is_never_written() {
        // A whole, well-formed answer: only the server's cut keeps it from the client.
        async fn marked() -> Response {
            let mut response = "secret".into_response();
            response.extensions_mut().insert(DroppedByFault);
            response
        }
        let router = Router::new().fallback(marked);
        let (addr, server) = serve("test", router, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("serve");
        assert!(raw_exchange(addr).await.is_empty(), "nothing of the answer");
        server.abort();
    }

    #[tokio::test]
    async fn under_plain_axum_serve_a_drop_still_leaves_the_client_without_an_answer() {
        // The host's tests serve simulator routers with `axum::serve`; the stand-in answer's
        // failing body must cut those connections too.
        let faults = Arc::new(Faults::default());
        faults.inject(FaultSpec {
            fault: Fault::Drop,
            count: 1,
            path: None,
        });
        let router = Router::new().fallback(gated).with_state(faults);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let answer = raw_exchange(addr).await;
        assert!(
            !String::from_utf8_lossy(&answer).contains("hello"),
            "no usable answer: {answer:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn aborting_the_server_closes_open_connections() {
        let (_faults, (addr, server)) = start().await;
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .expect("write");
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).await.expect("answer");
        assert_eq!(&first, b"HTTP/1.1 200");
        server.abort();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the kept-alive connection was closed");
        assert!(TcpStream::connect(addr).await.is_err(), "nothing listens");
    }
}
