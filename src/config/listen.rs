//! The serde shape of a TCP listener entry (`"IP:port"`, or a table with its
//! TLS), shared by every section that listens: `[statsd] tcp`, `[relay]
//! line_tcp` and `pickle`, `[aggregator] listen`.
//!
//! Owns [`RawListen`] and [`RawTls`]. A leaf: imports nothing of the crate,
//! so a component's own config (`crate::forward::config`) can use it without
//! importing the rest of [`crate::config`].

use serde::{Deserialize, Serialize};

/// A TCP listener entry: its address, or a table with its TLS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawListen {
    /// `IP:port`, plaintext.
    Address(String),
    /// `{ address = "IP:port", tls = { ... } }`.
    Table(RawListenTable),
}

/// `{ address = "IP:port", tls = { cert_file, key_file, client_ca_file } }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenTable {
    /// `IP:port`.
    pub address: String,
    /// TLS for this listener; absent: plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
}

/// A listener's TLS: its certificate, key, and the CA of client
/// certificates (mutual TLS when set). Paths are relative to the config
/// file; the files are read again at every reload.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The certificate chain, PEM.
    pub cert_file: String,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// Client certificates must be signed by this CA (PEM); unset: none asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<String>,
}

impl RawListen {
    /// The address part.
    pub fn address(&self) -> &str {
        match self {
            RawListen::Address(a) => a,
            RawListen::Table(t) => &t.address,
        }
    }

    /// Its TLS, if any.
    pub fn tls(&self) -> Option<&RawTls> {
        match self {
            RawListen::Address(_) => None,
            RawListen::Table(t) => t.tls.as_ref(),
        }
    }
}

impl From<&str> for RawListen {
    fn from(s: &str) -> Self {
        RawListen::Address(s.to_string())
    }
}

impl From<String> for RawListen {
    fn from(s: String) -> Self {
        RawListen::Address(s)
    }
}
