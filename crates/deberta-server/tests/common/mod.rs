//! Test helpers: a server on an ephemeral loopback port with a committed fixture model, and a
//! minimal HTTP/1.1 client over a plain `TcpStream` (every exchange bounded by a timeout).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use candle_core::Device;
use deberta::HeadKind;
use deberta_server::{Model, Server, ServerConfig, ServerError};
use deberta_tasks::Engine;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any one exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/tasks")
        .join(name)
}

pub fn engine(dir: &Path, head: HeadKind) -> Engine {
    Engine::from_dir(dir, head, &Device::Cpu).unwrap()
}

/// A running server; dropping it without `stop` leaves the task to the runtime's end.
pub struct TestServer {
    pub addr: SocketAddr,
    pub server_state: std::sync::Arc<deberta_server::AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// Starts a server for `dir` with `head` and waits (bounded) until `/health` is 200.
    pub async fn start(dir: &Path, head: HeadKind, config: ServerConfig) -> TestServer {
        Self::start_with(dir, head, config, Router::new()).await
    }

    /// [`TestServer::start`] with extra routes inside the middleware stack.
    pub async fn start_with(
        dir: &Path,
        head: HeadKind,
        config: ServerConfig,
        extra: Router,
    ) -> TestServer {
        let model = Model::new(engine(dir, head), "f32", config.max_input_length).unwrap();
        let server = Server::new(model, config).unwrap();
        let state = server.state().clone();
        let router = server.router_with(extra);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve_router(router, listener, async {
            let _ = rx.await;
        }));
        let t = TestServer {
            addr,
            server_state: state,
            shutdown: Some(tx),
            task: Some(task),
        };
        t.wait_healthy().await;
        t
    }

    async fn wait_healthy(&self) {
        for _ in 0..200 {
            if let Ok(r) = get(self.addr, "/health", &[]).await {
                if r.status == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not become healthy");
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down gracefully and waits (bounded) for the server to stop.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        self.join().await;
    }

    /// Waits (bounded) for a shutdown begun earlier.
    pub async fn join(&mut self) {
        if let Some(task) = self.task.take() {
            let done = tokio::time::timeout(TIMEOUT, task).await;
            done.expect("server stopped in time")
                .expect("server task")
                .expect("server ran");
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        post(self.addr, path, body, &[]).await.unwrap()
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error_type` of an error body.
    pub fn error_type(&self) -> String {
        self.json()["error_type"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    request(addr, "GET", path, headers, &[]).await
}

pub async fn post(
    addr: SocketAddr,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let bytes = serde_json::to_vec(body).unwrap();
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request(addr, "POST", path, &all, &bytes).await
}

/// One request on a fresh connection (`Connection: close`), read to the end.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    tokio::time::timeout(TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await?;
        stream
            .write_all(&head(method, path, headers, body.len()))
            .await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse(&raw)
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))?
}

/// The request line and headers.
pub fn head(method: &str, path: &str, headers: &[(&str, &str)], len: usize) -> Vec<u8> {
    let mut s = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str(&format!("content-length: {len}\r\n\r\n"));
    s.into_bytes()
}

fn parse(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = rest.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&rest[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
    out
}

/// The value of a Prometheus sample (`name{labels} value`), summed over label sets.
pub async fn metric(addr: SocketAddr, prefix: &str) -> f64 {
    let text = get(addr, "/metrics", &[]).await.unwrap().text();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `/metrics` every 20 ms until the sum of the series starting with `prefix` satisfies
/// `ready`, for at most `within`; returns the last value read (the caller asserts on it).
pub async fn wait_for_metric(
    addr: SocketAddr,
    prefix: &str,
    ready: impl Fn(f64) -> bool,
    within: Duration,
) -> f64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let value = metric(addr, prefix).await;
        if ready(value) || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts two JSON values have the same shape and strings, and numbers within `tol`.
pub fn assert_close(got: &Value, want: &Value, tol: f64) {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= tol, "{a} vs {b}");
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{got} vs {want}");
            for (x, y) in a.iter().zip(b) {
                assert_close(x, y, tol);
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(a), keys(b), "{got} vs {want}");
            for (k, v) in a {
                assert_close(v, &b[k], tol);
            }
        }
        _ => assert_eq!(got, want),
    }
}

/// A one-label sequence classifier (a reranker) made from the `nli` fixture: its classifier
/// keeps the first row. Written into `dir`.
pub fn make_reranker(dir: &Path) {
    let src = fixture("nli");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if name != "model.safetensors" && name != "config.json" {
            std::fs::copy(&path, dir.join(&name)).unwrap();
        }
    }
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    config["id2label"] = serde_json::json!({"0": "LABEL_0"});
    config["label2id"] = serde_json::json!({"LABEL_0": 0});
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        let (shape, data) =
            if name.ends_with("classifier.weight") || name.ends_with("classifier.bias") {
                let size = view.data().len() / view.shape()[0];
                let mut shape = view.shape().to_vec();
                shape[0] = 1;
                (shape, view.data()[..size].to_vec())
            } else {
                (view.shape().to_vec(), view.data().to_vec())
            };
        tensors.push((name, view.dtype(), shape, data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}
