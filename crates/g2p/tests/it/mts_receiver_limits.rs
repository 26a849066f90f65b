//! The callback receiver authenticates from the request's head before it reads a byte of the
//! body, and reads at most the connector's own limit. Over a raw socket, so that the test
//! sees how much of the body the server had taken when it answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

const BODY_BYTES: usize = 50_000_000;
const PIECE: usize = 64 * 1024;

/// What happened to one oversized POST.
#[derive(Debug)]
struct Outcome {
    status: u16,
    /// Body bytes the socket had accepted when the answer arrived (the kernel's buffers
    /// included: a few MB on loopback).
    written: usize,
    elapsed: Duration,
}

/// POSTs `len` bytes of filler to `path` with the `Authorization` value `auth`, writing in
/// the background while it waits for the answer's status line.
async fn post_streamed(addr: std::net::SocketAddr, path: &str, auth: &str, len: usize) -> Outcome {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    let started = Instant::now();
    wr.write_all(head.as_bytes()).await.expect("head");
    let written = Arc::new(AtomicUsize::new(0));
    let counter = written.clone();
    let writer = tokio::spawn(async move {
        let piece = vec![b' '; PIECE];
        let mut sent = 0usize;
        while sent < len {
            let n = PIECE.min(len - sent);
            if wr.write_all(&piece[..n]).await.is_err() {
                break;
            }
            sent += n;
            counter.store(sent, Ordering::SeqCst);
        }
        // Half-open until the test is done: the answer is still to be read.
        wr
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let status = loop {
        let n = tokio::time::timeout(Duration::from_secs(60), rd.read(&mut buf))
            .await
            .expect("an answer within 60 s")
            .expect("read the answer");
        assert!(n > 0, "the server closed without answering");
        answer.extend_from_slice(&buf[..n]);
        if let Some(end) = answer.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&answer[..end]).to_string();
            break line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse::<u16>().ok())
                .expect("a status code");
        }
    };
    let outcome = Outcome {
        status,
        written: written.load(Ordering::SeqCst),
        elapsed: started.elapsed(),
    };
    writer.abort();
    outcome
}

#[tokio::test]
async fn callbacks_are_refused_before_their_body_is_read() {
    for t in TestApp::all().await {
        let body = json!({
            "name": "limits", "mts_url": "http://127.0.0.1:9",
            "callback_url": format!("{}/api/v1/mts/callbacks/0", t.base),
            "callback_password": "correct horse battery",
            "callback_auth_type": "staticBearer",
        });
        let (st, c) = t.post("/api/v1/mts/connectors", &t.admin, body).await;
        assert_eq!(st, 201, "{c}");
        let cid = c["id"].as_i64().expect("id");
        let path = format!("/api/v1/mts/callbacks/{cid}");

        // A wrong secret and an unknown connector: 401 long before 50 MB have gone.
        for (what, path, auth) in [
            ("wrong secret", path.clone(), "Bearer not the secret"),
            (
                "unknown connector",
                "/api/v1/mts/callbacks/999999".to_owned(),
                "Bearer correct horse battery",
            ),
        ] {
            let o = post_streamed(t.app.addr, &path, auth, BODY_BYTES).await;
            eprintln!(
                "{:?} {what}: HTTP {} after {:?}, {} of {BODY_BYTES} body bytes accepted by the socket",
                t.backend, o.status, o.elapsed, o.written
            );
            assert_eq!(o.status, 401, "{what}: {o:?}");
            assert!(
                o.written < BODY_BYTES / 2,
                "{what}: the server answered only after taking {} bytes",
                o.written
            );
        }

        // The right secret, but more than a single (not bulk) callback may carry: 413, again
        // without taking the whole body.
        let o = post_streamed(
            t.app.addr,
            &path,
            "Bearer correct horse battery",
            BODY_BYTES,
        )
        .await;
        eprintln!(
            "{:?} oversized: HTTP {} after {:?}, {} bytes accepted",
            t.backend, o.status, o.elapsed, o.written
        );
        assert_eq!(o.status, 413, "{o:?}");
        assert!(o.written < BODY_BYTES / 2, "{o:?}");

        // The same connector still takes a callback of its size (an unknown reference: 422).
        let (st, v) = t
            .call(
                reqwest::Method::POST,
                &path,
                "correct horse battery",
                Some(json!({"ref": "nope.nope", "status": "processed", "token": "t"})),
            )
            .await;
        assert_eq!(st, 422, "{v}");
        t.stop().await;
    }
}
