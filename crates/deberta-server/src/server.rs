//! Starting, serving and stopping: the model thread, the router, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::Router;
use tokio::net::TcpListener;

use crate::batcher::{self, Health};
use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::infer::Infer;
use crate::model::Model;
use crate::queue::BatchLimits;
use crate::routes;
use crate::state::AppState;

/// A server ready to accept connections: the model thread is started (warming up).
pub struct Server {
    state: Arc<AppState>,
    model_thread: JoinHandle<()>,
}

impl Server {
    /// Checks the limits and starts the model thread (it warms the model up, then `/health`
    /// turns 200).
    pub fn new(model: Model, config: ServerConfig) -> Result<Self, ServerError> {
        config.validate(model.max_input_length())?;
        let (tx, rx) = std::sync::mpsc::channel();
        let health = Arc::new(Health::default());
        let limits = BatchLimits {
            max_tokens: config.max_batch_tokens,
            max_units: config.max_batch_requests.unwrap_or(usize::MAX),
        };
        let model_thread = batcher::spawn(model.engine().clone(), rx, limits, health.clone())?;
        let state = Arc::new(AppState {
            model: Arc::new(model),
            infer: Infer::new(tx, &config),
            config,
            health,
            metrics: crate::metrics::install(),
        });
        Ok(Server {
            state,
            model_thread,
        })
    }

    /// The shared state (model, limits, health).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Whether the model is loaded and warmed up.
    pub fn health(&self) -> Arc<Health> {
        self.state.health.clone()
    }

    /// The routes inside the middleware stack.
    pub fn router(&self) -> Router {
        self.router_with(Router::new())
    }

    /// The routes plus `extra` (tests add routes this way), inside the middleware stack.
    pub fn router_with(&self, extra: Router) -> Router {
        let state = self.state.clone();
        routes::layered(routes::routes(state.clone()).merge(extra), state)
    }

    /// Serves [`Server::router`] until `shutdown` completes, then finishes the requests in
    /// flight and stops the model thread.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let router = self.router();
        self.serve_router(router, listener, shutdown).await
    }

    /// [`Server::serve`] with a router from [`Server::router_with`].
    pub async fn serve_router(
        self,
        router: Router,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await?;
        tracing::info!("no request in flight; stopping the model thread");
        let Server {
            state,
            model_thread,
        } = self;
        state.infer.stop();
        drop(state);
        let joined = tokio::task::spawn_blocking(move || model_thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::warn!("the model thread ended abnormally");
        }
        Ok(())
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing the requests in flight");
}

/// Binds `addr`, serves until Ctrl-C or SIGTERM, then returns (for the `deberta serve`
/// binary, which needs no runtime of its own). Prints `listening on ADDR` to stderr once bound.
pub fn run_blocking(
    model: Model,
    config: ServerConfig,
    addr: SocketAddr,
) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("deberta-http")
        .build()?;
    runtime.block_on(async move {
        let server = Server::new(model, config)?;
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        eprintln!("listening on {local}");
        tracing::info!(%local, "listening");
        server.serve(listener, shutdown_signal()).await
    })
}
