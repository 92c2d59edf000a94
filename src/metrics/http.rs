//! `GET /metrics` over HTTP/1.1 (hyper) on `server.metrics_addr`; anything else is 404.

use std::convert::Infallible;
use std::sync::Weak;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::server::Shared;

/// Serves scrapes until the proxy is gone.
pub(crate) async fn serve(listener: TcpListener, shared: Weak<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(respond(&req, &shared)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn respond(req: &Request<Incoming>, shared: &Weak<Shared>) -> Response<Full<Bytes>> {
    let found = req.method() == Method::GET && req.uri().path() == "/metrics";
    let body = match (found, shared.upgrade()) {
        (true, Some(shared)) => shared.render_metrics(),
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(
                b"not found: pgtenant serves GET /metrics\n",
            )));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
