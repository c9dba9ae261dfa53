//! The Prometheus exporter-toolkit web config file (`[http]
//! web_config_file`, `--web.config.file`): TLS, basic auth with bcrypt
//! hashes, and response headers for the HTTP server, in the same format
//! node_exporter and every exporter read, so one file serves them all.
//!
//! Supported: `tls_server_config` (`cert_file`, `key_file`,
//! `client_auth_type` `NoClientCert`, `VerifyClientCertIfGiven` or
//! `RequireAndVerifyClientCert`, `client_ca_file`, `min_version`,
//! `max_version`), `http_server_config.headers` (the five the toolkit
//! allows) and `basic_auth_users`. Refused, so that a file never means less
//! than it says: `client_auth_type` values that do not verify the
//! certificate, and `client_allowed_sans`. Ignored with a warning (rustls
//! picks its own safe suites and curves): `cipher_suites`,
//! `curve_preferences`, `prefer_server_cipher_suites`; `http2` (the server
//! speaks HTTP/1.1). Relative paths are taken from the file's directory.
//!
//! Imports: [`crate::tls`] and [`crate::check`]. A leaf otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::check::relative_to;
use crate::tls::{ClientAuth, TlsServer, Version};

/// A loaded web config file.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Where it was read from.
    pub file: PathBuf,
    /// HTTPS, when `tls_server_config` is set.
    pub tls: Option<TlsServer>,
    /// `basic_auth_users`: user → bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
    /// Headers added to every response.
    pub headers: Vec<(String, String)>,
    /// The file's bytes as loaded: a rewritten file is a change.
    source: Arc<[u8]>,
}

impl PartialEq for WebConfig {
    fn eq(&self, o: &Self) -> bool {
        self.file == o.file && self.source == o.source && self.tls == o.tls
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    #[serde(default)]
    tls_server_config: Option<RawTlsServer>,
    #[serde(default)]
    http_server_config: Option<RawHttpServer>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsServer {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpServer {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The response headers the exporter toolkit lets a file set.
const HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

fn version(v: &str) -> Result<Version, String> {
    match v {
        "TLS12" => Ok(Version::Tls12),
        "TLS13" => Ok(Version::Tls13),
        "TLS10" | "TLS11" => Err(format!("{v} is not supported (TLS12 or TLS13)")),
        other => Err(format!("unknown TLS version {other:?} (TLS12 or TLS13)")),
    }
}

impl WebConfig {
    /// Read and check `path`; the warnings name what is ignored.
    pub fn load(path: &Path) -> Result<(WebConfig, Vec<String>), String> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| format!("{shown}: {e}"))?;
        let raw: RawWeb = if text.trim().is_empty() {
            RawWeb::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| format!("{shown}: {e}"))?
        };
        let mut warnings = Vec::new();
        let at = |p: &str| relative_to(&shown, p);
        let tls = match raw.tls_server_config {
            None => None,
            Some(t) => {
                let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) else {
                    return Err(format!(
                        "{shown}: tls_server_config needs cert_file and key_file"
                    ));
                };
                let auth = match t.client_auth_type.as_deref() {
                    None | Some("NoClientCert") => ClientAuth::None,
                    Some("VerifyClientCertIfGiven") => ClientAuth::VerifyIfGiven,
                    Some("RequireAndVerifyClientCert") => ClientAuth::Require,
                    Some(other @ ("RequestClientCert" | "RequireAnyClientCert")) => {
                        return Err(format!(
                            "{shown}: client_auth_type {other} does not verify the client \
                             certificate; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                        ))
                    }
                    Some(other) => {
                        return Err(format!("{shown}: unknown client_auth_type {other:?}"))
                    }
                };
                if t.client_allowed_sans
                    .as_ref()
                    .is_some_and(|s| !s.is_empty())
                {
                    return Err(format!(
                        "{shown}: client_allowed_sans is not supported; sign the allowed \
                         clients' certificates with a dedicated client_ca_file instead"
                    ));
                }
                for (set, key) in [
                    (t.cipher_suites.is_some(), "cipher_suites"),
                    (t.curve_preferences.is_some(), "curve_preferences"),
                    (
                        t.prefer_server_cipher_suites.is_some(),
                        "prefer_server_cipher_suites",
                    ),
                ] {
                    if set {
                        warnings.push(format!(
                            "{shown}: tls_server_config.{key} is ignored: rustls uses its own safe defaults"
                        ));
                    }
                }
                let min = t.min_version.as_deref().map(version).transpose();
                let max = t.max_version.as_deref().map(version).transpose();
                let (min, max) = (
                    min.map_err(|e| format!("{shown}: min_version: {e}"))?,
                    max.map_err(|e| format!("{shown}: max_version: {e}"))?,
                );
                let auth = (auth != ClientAuth::None).then_some(auth);
                let ca = t.client_ca_file.as_deref().map(at);
                let server = TlsServer::load(at(cert), at(key), ca, auth)
                    .and_then(|s| {
                        s.versions(min.unwrap_or(Version::Tls12), max.unwrap_or(Version::Tls13))
                    })
                    .map_err(|e| format!("{shown}: tls_server_config: {e}"))?;
                Some(server)
            }
        };
        let mut headers = Vec::new();
        if let Some(h) = raw.http_server_config {
            if h.http2 == Some(true) {
                warnings.push(format!(
                    "{shown}: http_server_config.http2 is ignored: statsyard serves HTTP/1.1"
                ));
            }
            for (name, value) in h.headers.unwrap_or_default() {
                let Some(known) = HEADERS.iter().find(|k| k.eq_ignore_ascii_case(&name)) else {
                    return Err(format!(
                        "{shown}: header {name:?} cannot be set (allowed: {})",
                        HEADERS.join(", ")
                    ));
                };
                if !value.is_empty() {
                    headers.push((known.to_string(), value));
                }
            }
        }
        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(format!(
                    "{shown}: user {user:?}: a user name cannot hold ':'"
                ));
            }
            hash.parse::<bcrypt::HashParts>()
                .map_err(|e| format!("{shown}: basic_auth_users.{user}: not a bcrypt hash: {e}"))?;
        }
        Ok((
            WebConfig {
                file: path.to_path_buf(),
                tls,
                users,
                headers,
                source: Arc::from(bytes),
            },
            warnings,
        ))
    }
}
