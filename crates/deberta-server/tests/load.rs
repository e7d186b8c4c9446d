//! Load behaviour: overload gives 429 then normal service, the bounded wait for a slot, a client
//! that disconnects mid-request (its units are dropped before compute), and graceful shutdown
//! with requests in flight. Loopback only; every loop is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{fixture, TestServer};
use deberta::HeadKind;
use deberta_server::ServerConfig;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The longest a test waits for the server's metrics to show a state.
const WAIT: Duration = Duration::from_secs(30);

fn texts(n: usize, words: usize) -> Vec<Vec<String>> {
    (0..n)
        .map(|i| {
            vec![format!(
                "{i} {}",
                "lorem ipsum dolor sit amet ".repeat(words / 5)
            )]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_over_the_limit_gets_429_then_normal_service() {
    let config = ServerConfig {
        max_concurrent_requests: 4,
        queue_timeout: Duration::from_millis(50),
        ..Default::default()
    };
    let server = TestServer::start(&fixture("nli"), HeadKind::SequenceClassification, config).await;
    // Every slot taken: a burst of 12 requests is refused after the bounded wait.
    let state = server.server_state.clone();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(state.acquire_permit().await.unwrap());
    }
    let burst = |n: usize| {
        let addr = server.addr;
        (0..n)
            .map(|i| {
                tokio::spawn(async move {
                    common::post(
                        addr,
                        "/predict",
                        &json!({"inputs": format!("text {i}")}),
                        &[],
                    )
                    .await
                    .unwrap()
                })
            })
            .collect::<Vec<_>>()
    };
    for task in burst(12) {
        let r = task.await.unwrap();
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(r.error_type(), "Overloaded");
    }
    assert!(common::metric(server.addr, "te_request_failure{err=\"overloaded\"}").await >= 12.0);
    // Slots free again: the same burst is served (4 at a time, the rest waiting their turn).
    drop(held);
    let config_wait = burst(12);
    let mut ok = 0;
    for task in config_wait {
        let r = task.await.unwrap();
        assert!(r.status == 200 || r.status == 429, "{}", r.status);
        ok += usize::from(r.status == 200);
    }
    assert!(ok >= 4, "{ok} of 12 served");
    for i in 0..5 {
        let r = server
            .post("/predict", &json!({"inputs": format!("after {i}")}))
            .await;
        assert_eq!(r.status, 200);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_a_slot_within_the_queue_timeout() {
    let config = ServerConfig {
        max_concurrent_requests: 1,
        queue_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let server = TestServer::start(&fixture("nli"), HeadKind::SequenceClassification, config).await;
    let permit = server.server_state.acquire_permit().await.unwrap();
    let addr = server.addr;
    let waiting = tokio::spawn(async move {
        common::post(addr, "/predict", &json!({"inputs": "patience"}), &[])
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(permit);
    assert_eq!(waiting.await.unwrap().status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_is_dropped_before_compute() {
    let config = ServerConfig {
        max_batch_requests: Some(1),
        max_client_batch_size: 4,
        auto_split: true,
        ..Default::default()
    };
    let server = TestServer::start(&fixture("nli"), HeadKind::SequenceClassification, config).await;
    let addr = server.addr;
    // A long request keeps the model thread busy (one unit per batch)...
    let busy = tokio::spawn(async move {
        common::post(addr, "/predict", &json!({"inputs": texts(300, 200)}), &[])
            .await
            .unwrap()
    });
    // Synchronised on the server's own metrics, not on sleeps: a fixed head start was too
    // short when the busy request's tokenisation was slow, and the second client then went
    // first (seen once in 8 runs).
    let queued = common::wait_for_metric(addr, "te_queue_size", |v| v >= 2.0, WAIT).await;
    assert!(
        queued >= 2.0,
        "the busy request never queued: te_queue_size {queued}"
    );
    // ... while another client sends 5 units and hangs up before they are reached.
    let body = serde_json::to_vec(&json!({"inputs": texts(20, 20)})).unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = common::head(
        "POST",
        "/predict",
        &[("content-type", "application/json")],
        body.len(),
    );
    stream.write_all(&head).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let arrived = common::wait_for_metric(addr, "te_request_count", |v| v >= 2.0, WAIT).await;
    assert!(arrived >= 2.0, "te_request_count {arrived}");
    // Time to tokenise 20 short texts and queue them behind the busy units.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    let r = busy.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().as_array().map(Vec::len), Some(300));
    let dropped = common::wait_for_metric(addr, "te_queue_dropped", |v| v >= 1.0, WAIT).await;
    assert!(dropped >= 1.0, "te_queue_dropped {dropped}");
    let r = server.post("/predict", &json!({"inputs": "next"})).await;
    assert_eq!(r.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let config = ServerConfig {
        max_batch_requests: Some(2),
        max_client_batch_size: 64,
        ..Default::default()
    };
    let mut server =
        TestServer::start(&fixture("nli"), HeadKind::SequenceClassification, config).await;
    let addr = server.addr;
    let in_flight: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                common::post(addr, "/predict", &json!({"inputs": texts(40, 100)}), &[])
                    .await
                    .unwrap()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.begin_shutdown();
    for task in in_flight {
        let r = task.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json().as_array().map(Vec::len), Some(40));
    }
    server.join().await;
    // Stopped: no new connection is accepted.
    let late = common::post(addr, "/predict", &json!({"inputs": "late"}), &[]).await;
    assert!(late.is_err(), "{late:?}");
}
