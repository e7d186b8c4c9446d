//! `deberta serve` as a process: binds an ephemeral loopback port, answers, and on SIGTERM
//! finishes the requests in flight and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn model(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/tasks")
        .join(name);
    p.to_str().unwrap().to_string()
}

/// One HTTP/1.1 exchange (`Connection: close`); returns (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

#[cfg(unix)]
#[test]
fn serve_answers_then_sigterm_finishes_in_flight_requests_and_exits_0() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deberta"))
        .args([
            "serve",
            "--model",
            &model("nli"),
            "--port",
            "0",
            "--threads",
            "1",
        ])
        .args(["--max-batch-requests", "1", "--auto-split"])
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr: SocketAddr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "serve exited early"
        );
        if let Some(a) = line.trim().strip_prefix("listening on ") {
            break a.parse().unwrap();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let start = Instant::now();
    while http(addr, "GET", "/health", "").0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(60), "never healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = http(addr, "POST", "/predict", r#"{"inputs": "I like it."}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("entailment"), "{body}");

    // A request in flight (100 units, one per batch), then SIGTERM.
    let batch: Vec<Vec<String>> = (0..100)
        .map(|i| vec![format!("{i} {}", "some words ".repeat(30))])
        .collect();
    let big = serde_json::json!({ "inputs": batch }).to_string();
    let in_flight = std::thread::spawn(move || http(addr, "POST", "/predict", &big));
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let answers: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answers.as_array().map(Vec::len), Some(100));
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "{code:?}");
}
