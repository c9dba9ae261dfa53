//! The axum application and its server: routes, graceful shutdown.

use std::sync::Arc;

use crate::reload::Reloader;
use crate::shutdown::CancellationToken;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use super::{api, Shared};

/// Every route.
pub fn router(shared: Shared) -> Router {
    // Bad query strings are answered by axum's own `Query` rejection: 400.
    Router::new()
        .route("/metrics", get(api::metrics))
        .route("/health", get(api::health))
        .route("/api/stats", get(api::stats))
        .route("/api/series", get(api::series))
        .route("/api/top", get(api::top))
        .fallback(api::not_found)
        .with_state(shared)
}

/// Serve HTTP on `listener` until `token` is cancelled; requests in flight
/// are finished first.
pub async fn serve(listener: TcpListener, shared: Shared, token: CancellationToken) {
    let app = router(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(token.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}

/// [`router`] plus `POST /-/reload`.
pub fn router_with_reload(shared: Shared, reload: Arc<Reloader>) -> Router {
    let s = shared.clone();
    router(shared).route(
        "/-/reload",
        post(move |headers: axum::http::HeaderMap| api::reload(reload.clone(), s.clone(), headers)),
    )
}

/// [`serve`], with `POST /-/reload`.
pub async fn serve_with_reload(
    listener: TcpListener,
    shared: Shared,
    reload: Arc<Reloader>,
    token: CancellationToken,
) {
    let app = router_with_reload(shared, reload);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(token.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
