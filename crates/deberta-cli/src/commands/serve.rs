//! `deberta serve`: one model over HTTP with TEI's routes and every task (see the
//! `deberta-server` crate).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use candle_core::Device;
use clap::Args;
use deberta::{DebertaV2Config, HeadKind, LinearFormat};
use deberta_server::{Model, ServerConfig};
use deberta_tasks::{resolve_model, Engine};
use deberta_tokenizer::Tokenizer;

#[derive(Args)]
pub struct ServeArgs {
    /// Checkpoint directory, or a hub id looked up in the HuggingFace cache.
    #[arg(long, env = "DEBERTA_MODEL")]
    model: String,
    /// The head to load: auto (config.json's `architectures`), sequence-classification,
    /// masked-lm, token-classification, question-answering or multiple-choice.
    #[arg(long, default_value = "auto")]
    head: String,
    /// Tokenizer directory (default: the model's).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Address to bind (loopback by default).
    #[arg(long, default_value = "127.0.0.1", env = "DEBERTA_HOST")]
    host: IpAddr,
    /// Port (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8080, env = "DEBERTA_PORT")]
    port: u16,
    /// Compute type of the encoder's linear layers.
    #[arg(long, default_value = "f32", value_parser = LinearFormat::NAMES)]
    dtype: String,
    /// CPU threads of the forward pass (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Most tokens in one batch of the model (the sum of its sequences' lengths).
    #[arg(long, default_value_t = 16384)]
    max_batch_tokens: usize,
    /// Most model units (texts, pairs, windows) in one batch (default: no limit).
    #[arg(long)]
    max_batch_requests: Option<usize>,
    /// Client requests served at once; more wait --queue-timeout-ms, then get 429.
    #[arg(long, default_value_t = 512)]
    max_concurrent_requests: usize,
    /// Most inputs in one request (texts, rerank texts, zero-shot labels, choices).
    #[arg(long, default_value_t = 32)]
    max_client_batch_size: usize,
    /// Split requests over --max-client-batch-size instead of refusing them (413).
    #[arg(long)]
    auto_split: bool,
    /// Longest input in tokens (default: the tokenizer's model_max_length, else the model's
    /// max_position_embeddings).
    #[arg(long)]
    max_input_length: Option<usize>,
    /// Truncate inputs over --max-input-length unless a request says `truncate: false`
    /// (otherwise they get 422 unless a request says `truncate: true`).
    #[arg(long)]
    auto_truncate: bool,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 2_000_000)]
    payload_limit: usize,
    /// How long a request waits for a free slot before 429 (0: refuse at once, as TEI).
    #[arg(long, default_value_t = 2000)]
    queue_timeout_ms: u64,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "DEBERTA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Allowed CORS origins (comma-separated, `*` for any; default: no CORS headers).
    #[arg(long, value_delimiter = ',')]
    cors_allow_origin: Vec<String>,
}

pub fn run(args: ServeArgs) -> Result<()> {
    if let Some(t) = args.threads {
        // candle's CPU kernels size their thread pools from RAYON_NUM_THREADS.
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    }
    let model = load(&args)?;
    let config = ServerConfig {
        max_batch_tokens: args.max_batch_tokens,
        max_batch_requests: args.max_batch_requests,
        max_concurrent_requests: args.max_concurrent_requests,
        max_client_batch_size: args.max_client_batch_size,
        auto_split: args.auto_split,
        max_input_length: args.max_input_length,
        auto_truncate: args.auto_truncate,
        payload_limit: args.payload_limit,
        queue_timeout: Duration::from_millis(args.queue_timeout_ms),
        api_key: args.api_key.clone(),
        cors_allow_origin: args.cors_allow_origin.clone(),
        model_id: args.model.clone(),
    };
    let addr = SocketAddr::new(args.host, args.port);
    deberta_server::run_blocking(model, config, addr)?;
    Ok(())
}

fn load(args: &ServeArgs) -> Result<Model> {
    let dir = resolve_model(&args.model)?;
    let head = match args.head.as_str() {
        "auto" => {
            let config = DebertaV2Config::from_file(dir.join("config.json"))
                .with_context(|| format!("reading {}", dir.join("config.json").display()))?;
            HeadKind::from_config(&config)?
        }
        name => name.parse()?,
    };
    let tokenizer_dir = args.tokenizer.clone().unwrap_or_else(|| dir.clone());
    let tokenizer = Tokenizer::from_dir(&tokenizer_dir)
        .with_context(|| format!("loading the tokenizer from {}", tokenizer_dir.display()))?;
    let load = super::kernel_env::load_options(args.dtype.parse()?)?;
    let engine = Engine::with_load_options(&dir, tokenizer, head, &Device::Cpu, load)
        .with_context(|| format!("loading the model from {}", dir.display()))?;
    Ok(Model::new(engine, &args.dtype, args.max_input_length)?)
}
