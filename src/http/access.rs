//! What the web config file asks of every request: basic auth against its
//! bcrypt-hashed users (a wrong or missing password is a 401, counted in
//! `http_auth_failures` and logged at a limited rate), and its response
//! headers.
//!
//! Imports, besides `http` itself: `front`, `stats`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use crate::front::Front;
use crate::stats::incr;

/// `Authorization: Basic base64(user:password)`, decoded.
fn credentials(req: &Request) -> Option<(String, String)> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The middleware: authenticate, run the route, add the headers.
pub async fn check(State(front): State<Arc<Front>>, req: Request, next: Next) -> Response {
    let web = front.web();
    if web.as_ref().is_some_and(|w| !w.users.is_empty()) {
        let creds = credentials(&req);
        let f = front.clone();
        // bcrypt takes tens of milliseconds: not on a worker that other
        // connections need (a pair that passed once is remembered).
        let ok = tokio::task::spawn_blocking(move || {
            f.authorized(creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str())))
        })
        .await
        .unwrap_or(false);
        if !ok {
            incr(&front.stats.http_auth_failures, 1);
            if let Some(suppressed) = front.auth_log() {
                tracing::warn!(
                    path = %req.uri().path(),
                    suppressed,
                    "HTTP request refused: missing or wrong basic-auth credentials"
                );
            }
            let mut resp = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"statsyard\""),
            );
            return resp;
        }
    }
    let mut resp = next.run(req).await;
    if let Some(w) = web {
        for (name, value) in &w.headers {
            if let (Ok(n), Ok(v)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                resp.headers_mut().insert(n, v);
            }
        }
    }
    resp
}
