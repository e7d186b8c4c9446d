//! Every error class answers its status and `{error, error_type}`, and the server keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use common::{fixture, request, TestServer};
use deberta::HeadKind;
use deberta_server::ServerConfig;
use serde_json::json;

async fn expect(server: &TestServer, path: &str, body: &[u8], status: u16, kind: &str) -> String {
    let r = request(
        server.addr,
        "POST",
        path,
        &[("content-type", "application/json")],
        body,
    )
    .await
    .unwrap();
    assert_eq!(
        r.status,
        status,
        "{path} {}: {}",
        String::from_utf8_lossy(body),
        r.text()
    );
    let json = r.json();
    assert_eq!(json["error_type"], kind, "{json}");
    json["error"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_class() {
    let config = ServerConfig {
        max_client_batch_size: 3,
        max_input_length: Some(16),
        payload_limit: 4096,
        ..Default::default()
    };
    let extra = Router::new().route(
        "/test/panic",
        get(|| async {
            if true {
                panic!("boom");
            }
            "unreachable"
        }),
    );
    let server = TestServer::start_with(
        &fixture("nli"),
        HeadKind::SequenceClassification,
        config,
        extra,
    )
    .await;
    let s = &server;

    // Malformed JSON, wrong types, unknown fields of the task routes: 422 Validation.
    let e = expect(s, "/predict", b"{\"inputs\": ", 422, "Validation").await;
    assert!(e.contains("malformed JSON"), "{e}");
    expect(s, "/predict", b"", 422, "Validation").await;
    let e = expect(s, "/predict", br#"{"inputs": 5}"#, 422, "Validation").await;
    assert!(e.contains("invalid request"), "{e}");
    expect(
        s,
        "/predict",
        br#"{"inputs": ["a", "b", "c"]}"#,
        422,
        "Validation",
    )
    .await;
    expect(
        s,
        "/zero-shot",
        br#"{"inputs": "a", "candidate_labels": ["x"], "bogus": 1}"#,
        422,
        "Validation",
    )
    .await;
    expect(s, "/rerank", br#"{"query": "q"}"#, 422, "Validation").await;

    // Empty inputs: 400 Empty.
    expect(s, "/predict", br#"{"inputs": ""}"#, 400, "Empty").await;
    expect(s, "/predict", br#"{"inputs": []}"#, 400, "Empty").await;
    expect(
        s,
        "/zero-shot",
        br#"{"inputs": "a", "candidate_labels": []}"#,
        400,
        "Empty",
    )
    .await;
    expect(s, "/tokenize", br#"{"inputs": []}"#, 400, "Empty").await;
    expect(s, "/decode", br#"{"ids": []}"#, 400, "Empty").await;

    // Too long: 422 unless truncation is asked for.
    let long = "word ".repeat(40);
    let e = expect(
        s,
        "/predict",
        json!({"inputs": long}).to_string().as_bytes(),
        422,
        "Validation",
    )
    .await;
    assert!(e.contains("at most 16 tokens"), "{e}");
    let r = s
        .post("/predict", &json!({"inputs": long, "truncate": true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-compute-tokens"), Some("16"));
    let r = s
        .post(
            "/predict",
            &json!({"inputs": long, "truncate": true, "truncation_direction": "left"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Too many inputs: 413 (refused, not split, without --auto-split).
    let e = expect(
        s,
        "/predict",
        br#"{"inputs": [["a"], ["b"], ["c"], ["d"]]}"#,
        413,
        "PayloadTooLarge",
    )
    .await;
    assert!(
        e.contains("batch size 4 > maximum allowed batch size 3"),
        "{e}"
    );
    expect(
        s,
        "/zero-shot",
        br#"{"inputs": "a", "candidate_labels": ["w", "x", "y", "z"]}"#,
        413,
        "PayloadTooLarge",
    )
    .await;

    // Body over the payload limit: 413.
    let big = json!({"inputs": "a ".repeat(5000)}).to_string();
    let e = expect(s, "/predict", big.as_bytes(), 413, "PayloadTooLarge").await;
    assert!(e.contains("payload-limit"), "{e}");

    // Tokenizer error (unknown id): 422 Tokenizer.
    expect(s, "/decode", br#"{"ids": [4000000000]}"#, 422, "Tokenizer").await;

    // Unknown route: 404 as JSON.
    let r = request(s.addr, "GET", "/nope", &[], b"").await.unwrap();
    assert_eq!((r.status, r.error_type().as_str()), (404, "NotFound"));

    // A panicking handler: 500 naming the request id; the server keeps serving.
    let r = request(
        s.addr,
        "GET",
        "/test/panic",
        &[("x-request-id", "req-77")],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.error_type(), "Internal");
    assert!(r.json()["error"].as_str().unwrap().contains("req-77"));
    assert_eq!(r.header("x-request-id"), Some("req-77"));
    let r = s.post("/predict", &json!({"inputs": "still here"})).await;
    assert_eq!(r.status, 200);

    let failures = common::metric(s.addr, "te_request_failure").await;
    assert!(failures >= 15.0, "te_request_failure {failures}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_split_and_auto_truncate() {
    let config = ServerConfig {
        max_client_batch_size: 2,
        auto_split: true,
        max_input_length: Some(16),
        auto_truncate: true,
        ..Default::default()
    };
    let server = TestServer::start(&fixture("nli"), HeadKind::SequenceClassification, config).await;
    let inputs: Vec<Vec<String>> = (0..7).map(|i| vec![format!("text number {i}")]).collect();
    let r = server.post("/predict", &json!({"inputs": inputs})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().as_array().unwrap().len(), 7);
    let r = server
        .post("/predict", &json!({"inputs": "word ".repeat(40)}))
        .await;
    assert_eq!(r.status, 200, "auto-truncate: {}", r.text());
    let r = server
        .post(
            "/predict",
            &json!({"inputs": "word ".repeat(40), "truncate": false}),
        )
        .await;
    assert_eq!(r.status, 422);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_guards_every_route_but_health() {
    let config = ServerConfig {
        api_key: Some("s3cret".into()),
        ..Default::default()
    };
    let server = TestServer::start(&fixture("nli"), HeadKind::SequenceClassification, config).await;
    let body = json!({"inputs": "hi"}).to_string();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret"),
        Some("Bearer s3cret2"),
    ] {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let r = request(server.addr, "POST", "/predict", &headers, body.as_bytes())
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.error_type().as_str()),
            (401, "Unauthorized"),
            "{auth:?}"
        );
    }
    for path in ["/info", "/metrics", "/api-doc/openapi.json"] {
        let r = request(server.addr, "GET", path, &[], b"").await.unwrap();
        assert_eq!(r.status, 401, "{path}");
    }
    let ok = [
        ("content-type", "application/json"),
        ("authorization", "Bearer s3cret"),
    ];
    let r = request(server.addr, "POST", "/predict", &ok, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = request(server.addr, "GET", "/health", &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.stop().await;
}
