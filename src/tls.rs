//! TLS with rustls (no OpenSSL): a listener's certificate, the optional
//! client-certificate check (mutual TLS), and the handshake of each accepted
//! connection, bounded in time, with failures counted and logged at a limited
//! rate, never fatal.
//!
//! A listener holds an [`Acceptor`]: its TLS settings, which a reload swaps
//! in place (certificate rotation needs no restart and no rebind; a
//! connection keeps the certificate it was accepted with). Its settings come
//! from the config ([`TlsServer`]: the file names and their bytes as loaded,
//! so a reload that finds the files rewritten sees a change).
//!
//! Imports: the counters and the log limiter. A leaf otherwise.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::log_limit::LogLimiter;
use crate::stats::{incr, Stats};

/// How long a client may take to finish the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether (and how) clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// None asked for.
    #[default]
    None,
    /// Asked for; a client without one is let in, one that presents a
    /// certificate the CA did not sign is refused.
    VerifyIfGiven,
    /// Required, signed by the CA.
    Require,
}

/// TLS protocol versions a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    Tls12,
    Tls13,
}

/// A listener's validated TLS settings: `tls = { cert_file, key_file,
/// client_ca_file }`, or the `tls_server_config` of an HTTP web config file.
#[derive(Debug, Clone)]
pub struct TlsServer {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The CA that signs client certificates (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub min_version: Version,
    pub max_version: Version,
    /// The files' bytes as loaded.
    pem: Arc<Pem>,
}

#[derive(Debug, PartialEq, Eq)]
struct Pem {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Option<Vec<u8>>,
}

impl PartialEq for TlsServer {
    /// Equal files with equal contents: a rewritten certificate is a change.
    fn eq(&self, o: &Self) -> bool {
        self.cert_file == o.cert_file
            && self.key_file == o.key_file
            && self.client_ca_file == o.client_ca_file
            && self.client_auth == o.client_auth
            && self.min_version == o.min_version
            && self.max_version == o.max_version
            && self.pem == o.pem
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

impl TlsServer {
    /// Read and check the files: a certificate chain, its private key, and
    /// the client CA if one is given (`client_auth` then defaults to
    /// [`ClientAuth::Require`]). Errors say which file and why.
    pub fn load(
        cert_file: PathBuf,
        key_file: PathBuf,
        client_ca_file: Option<PathBuf>,
        client_auth: Option<ClientAuth>,
    ) -> Result<TlsServer, String> {
        let pem = Pem {
            cert: read("certificate", &cert_file)?,
            key: read("key", &key_file)?,
            ca: client_ca_file
                .as_deref()
                .map(|p| read("client CA", p))
                .transpose()?,
        };
        let client_auth = match (client_auth, &client_ca_file) {
            (Some(ClientAuth::None), _) => ClientAuth::None,
            (Some(a), Some(_)) => a,
            (Some(_), None) => {
                return Err("client certificates are checked against client_ca_file: set it".into())
            }
            (None, Some(_)) => ClientAuth::Require,
            (None, None) => ClientAuth::None,
        };
        let t = TlsServer {
            cert_file,
            key_file,
            client_ca_file,
            client_auth,
            min_version: Version::Tls12,
            max_version: Version::Tls13,
            pem: Arc::new(pem),
        };
        t.server_config()?;
        Ok(t)
    }

    /// Accept only these versions.
    pub fn versions(mut self, min: Version, max: Version) -> Result<TlsServer, String> {
        if min > max {
            return Err("min_version is above max_version".into());
        }
        self.min_version = min;
        self.max_version = max;
        Ok(self)
    }

    /// The rustls settings: built at start and at each reload, from the
    /// bytes read when the config was loaded.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let provider = Arc::new(provider());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.pem.cert)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {e}", self.cert_file.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "{}: no PEM certificate in it",
                self.cert_file.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.pem.key)
            .map_err(|e| format!("{}: no PEM private key: {e}", self.key_file.display()))?;
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
            (Version::Tls12, &rustls::version::TLS12),
            (Version::Tls13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| (self.min_version..=self.max_version).contains(v))
        .map(|(_, p)| p)
        .collect();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = match (&self.pem.ca, self.client_auth) {
            (Some(ca), auth) if auth != ClientAuth::None => {
                let mut roots = rustls::RootCertStore::empty();
                let path = self.client_ca_file.as_deref().unwrap_or(Path::new(""));
                for c in CertificateDer::pem_slice_iter(ca) {
                    let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots
                        .add(c)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("{}: no PEM certificate in it", path.display()));
                }
                let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let v = match auth {
                    ClientAuth::VerifyIfGiven => v.allow_unauthenticated(),
                    _ => v,
                };
                builder.with_client_cert_verifier(
                    v.build().map_err(|e| format!("{}: {e}", path.display()))?,
                )
            }
            _ => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("{}: {e}", self.key_file.display()))?;
        Ok(Arc::new(config))
    }
}

/// The cryptography under rustls: `ring`. rustls 0.23.48 marks it
/// deprecated for its lack of post-quantum key exchange, which `aws-lc-rs`
/// has; but aws-lc-rs builds a large C library (cmake, a C compiler at build
/// time, minutes per build), and the classical suites ring offers (ECDHE
/// X25519/P-256, AES-GCM, ChaCha20-Poly1305, TLS 1.2 and 1.3) are what the
/// Prometheus and carbon ecosystems use. Revisit when post-quantum key
/// exchange matters to users.
#[allow(deprecated)]
pub fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A listener's TLS: off, or its current settings; a reload swaps them.
pub struct Acceptor {
    config: RwLock<Option<Arc<ServerConfig>>>,
    stats: Arc<Stats>,
    /// What logs call the listener (`tcp 0.0.0.0:8125`).
    what: String,
    log: Mutex<LogLimiter>,
}

impl Acceptor {
    /// A listener without TLS until [`Acceptor::set`].
    pub fn new(what: impl Into<String>, stats: Arc<Stats>) -> Acceptor {
        Acceptor {
            config: RwLock::new(None),
            stats,
            what: what.into(),
            log: Mutex::new(LogLimiter::new(10, Duration::from_secs(60))),
        }
    }

    /// New settings (`None`: plaintext), for the connections accepted from now on.
    pub fn set(&self, config: Option<Arc<ServerConfig>>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Finish the handshake of an accepted connection (at once without
    /// TLS). `None` when it failed or took longer than
    /// [`HANDSHAKE_TIMEOUT`]: counted (`tls_handshake_failures`, and
    /// `tls_client_certs_refused` for a certificate refused) and logged at a
    /// limited rate. Run it on the connection's own task.
    pub async fn accept<S>(&self, stream: S, peer: &str) -> Option<MaybeTls<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(config) = config else {
            return Some(MaybeTls::Plain(stream));
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let why = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(s)) => return Some(MaybeTls::Tls(Box::new(s))),
            Ok(Err(e)) => e,
            Err(_) => io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"),
        };
        incr(&self.stats.tls_handshake_failures, 1);
        let refused = why
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .is_some_and(|e| {
                matches!(
                    e,
                    rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_)
                )
            });
        if refused {
            incr(&self.stats.tls_client_certs_refused, 1);
        }
        let allowed = self.log.lock().unwrap_or_else(|e| e.into_inner()).allow();
        if let Some(suppressed) = allowed {
            tracing::warn!(
                listener = %self.what,
                %peer,
                error = %why,
                client_certificate_refused = refused,
                suppressed,
                "TLS handshake failed; connection closed"
            );
        }
        None
    }
}

/// An accepted connection, in plaintext or TLS.
pub enum MaybeTls<S> {
    Plain(S),
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A destination's `tls = { ca_file, cert_file, key_file, server_name,
/// insecure_skip_verify }`, as written (paths relative to the config file).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsClient {
    /// The CA that signed the destination's certificate (PEM); unset: the
    /// system's trusted CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// A client certificate to present (PEM), for destinations that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// Its private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// The name the certificate must carry (and the SNI); unset: the host
    /// of the destination's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any certificate (encryption without authentication: for
    /// tests only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A destination's validated TLS settings, with the files' bytes as loaded
/// (a rewritten file is a change, and a reload reconnects with it).
#[derive(Debug, Clone, PartialEq)]
pub struct TlsClient {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
    pem: Arc<ClientPem>,
}

#[derive(Debug, PartialEq, Eq)]
struct ClientPem {
    ca: Option<Vec<u8>>,
    cert: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
}

impl TlsClient {
    /// Read and check the files named in `raw`; relative paths start at
    /// `file`'s directory.
    pub fn load(raw: &RawTlsClient, file: &str) -> Result<TlsClient, String> {
        let at = |p: &Option<String>| p.as_deref().map(|p| crate::check::relative_to(file, p));
        let (ca_file, cert_file, key_file) =
            (at(&raw.ca_file), at(&raw.cert_file), at(&raw.key_file));
        if cert_file.is_some() != key_file.is_some() {
            return Err("cert_file and key_file go together".into());
        }
        if let Some(n) = &raw.server_name {
            ServerName::try_from(n.clone()).map_err(|e| format!("server_name {n:?}: {e}"))?;
        }
        let read_opt =
            |what: &str, p: &Option<PathBuf>| p.as_deref().map(|p| read(what, p)).transpose();
        let pem = ClientPem {
            ca: read_opt("CA", &ca_file)?,
            cert: read_opt("certificate", &cert_file)?,
            key: read_opt("key", &key_file)?,
        };
        let t = TlsClient {
            ca_file,
            cert_file,
            key_file,
            server_name: raw.server_name.clone(),
            insecure_skip_verify: raw.insecure_skip_verify,
            pem: Arc::new(pem),
        };
        t.client_config()?;
        Ok(t)
    }

    /// The name to check the certificate against: `server_name`, or `host`
    /// (the destination's, without its port).
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.server_name.clone().unwrap_or_else(|| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        });
        ServerName::try_from(name.clone()).map_err(|e| format!("server name {name:?}: {e}"))
    }

    /// The rustls settings: the CA (or the system's), the client
    /// certificate if any.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = Arc::new(provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        } else {
            let mut roots = rustls::RootCertStore::empty();
            match (&self.pem.ca, &self.ca_file) {
                (Some(ca), Some(path)) => {
                    for c in CertificateDer::pem_slice_iter(ca) {
                        let c = c.map_err(|e| format!("{}: {e}", path.display()))?;
                        roots
                            .add(c)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                    }
                    if roots.is_empty() {
                        return Err(format!("{}: no PEM certificate in it", path.display()));
                    }
                }
                _ => {
                    let found = rustls_native_certs::load_native_certs();
                    for c in found.certs {
                        let _ = roots.add(c);
                    }
                    if roots.is_empty() {
                        return Err(
                            "no ca_file, and the system has no trusted CA certificates".into()
                        );
                    }
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&self.pem.cert, &self.pem.key) {
            (Some(cert), Some(key)) => {
                let shown = |p: &Option<PathBuf>| {
                    p.as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                };
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{}: {e}", shown(&self.cert_file)))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| format!("{}: no PEM private key: {e}", shown(&self.key_file)))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("{}: {e}", shown(&self.key_file)))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// `insecure_skip_verify`: any certificate is taken (signatures are still
/// checked, so the handshake is real TLS; who is at the other end is not).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
