//! TLS, client certificates, basic auth and allow-lists, against real
//! clients: `openssl s_client` sends statsd lines over TLS, `curl` fetches
//! `/metrics` over HTTPS with basic auth, and a real Prometheus scrapes it
//! with its own `tls_config` and `basic_auth`. Certificates are made for each
//! test by rcgen (a CA, a server certificate, a client certificate, and a
//! client certificate of another CA).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use statsyard::stats::get;

use crate::support::{config, free_tcp_port, secs, send_udp, Graphite, Proc, Server};

/// A command-line peer (openssl, curl), or `None` (after saying why) when it
/// is missing outside CI.
pub fn tool(name: &str) -> Option<PathBuf> {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} is missing; .ci/run installs it"
    );
    eprintln!("skipping: {name} is not installed");
    None
}

/// A test PKI written to a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1, localhost and
    /// store.statsyard.test named `cn`,
    /// a client certificate of the CA, and one of another CA.
    pub fn new(cn: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki { dir };
        let (ca_params, ca_key) = ca("statsyard test CA");
        pki.write("ca.pem", &ca_params.self_signed(&ca_key).unwrap().pem());
        let issuer = Issuer::new(ca_params, ca_key);
        let (rogue_params, rogue_key) = ca("another CA");
        let rogue = Issuer::new(rogue_params, rogue_key);
        pki.leaf(&issuer, "server", cn, ExtendedKeyUsagePurpose::ServerAuth);
        pki.leaf(
            &issuer,
            "client",
            "a client",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        pki.leaf(
            &rogue,
            "rogue",
            "a stranger",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        pki
    }

    /// A new server certificate and key, of the same CA, named `cn`.
    pub fn rotate(&self, cn: &str) {
        let (ca_params, ca_key) = ca("statsyard test CA 2");
        self.write("ca2.pem", &ca_params.self_signed(&ca_key).unwrap().pem());
        let issuer = Issuer::new(ca_params, ca_key);
        self.leaf(&issuer, "server", cn, ExtendedKeyUsagePurpose::ServerAuth);
    }

    fn leaf(
        &self,
        issuer: &Issuer<'_, KeyPair>,
        name: &str,
        cn: &str,
        usage: ExtendedKeyUsagePurpose,
    ) {
        let mut p = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".into(),
            // A name no resolver knows: only `server_name` reaches it.
            "store.statsyard.test".into(),
        ])
        .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, issuer).unwrap();
        self.write(&format!("{name}.pem"), &cert.pem());
        self.write(&format!("{name}.key"), &key.serialize_pem());
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `tls = { ... }` for a listener, with `client_ca_file` when `mutual`.
    pub fn listener_tls(&self, mutual: bool) -> String {
        let ca = if mutual {
            format!(", client_ca_file = {:?}", self.path("ca.pem"))
        } else {
            String::new()
        };
        format!(
            "{{ cert_file = {:?}, key_file = {:?}{ca} }}",
            self.path("server.pem"),
            self.path("server.key")
        )
    }
}

fn ca(cn: &str) -> (CertificateParams, KeyPair) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name.push(DnType::CommonName, cn);
    (p, KeyPair::generate().unwrap())
}

/// `openssl s_client`: connect to `addr` trusting `ca`, present
/// `client` (name of a cert/key pair of `pki`) if given, send `input`,
/// close, and return what it printed (stdout and stderr).
pub fn s_client(
    openssl: &Path,
    pki: &Pki,
    addr: SocketAddr,
    client: Option<&str>,
    input: &[u8],
) -> String {
    let mut cmd = Command::new(openssl);
    cmd.args(["s_client", "-connect", &addr.to_string()])
        .arg("-CAfile")
        .arg(pki.path("ca.pem"))
        .args(["-verify_return_error", "-no_ign_eof", "-showcerts"]);
    if let Some(name) = client {
        cmd.arg("-cert")
            .arg(pki.path(&format!("{name}.pem")))
            .arg("-key")
            .arg(pki.path(&format!("{name}.key")));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    {
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(input);
        // Closing stdin ends the session (-no_ign_eof).
    }
    let end = Instant::now() + secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "openssl s_client did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn wait(what: &str, done: impl Fn() -> bool) {
    let end = Instant::now() + secs(15);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn statsd_over_tls_with_and_without_client_certificates() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let pki = Pki::new("statsyard one");
    let mut graphite = Graphite::start();
    let (p1, p2) = (free_tcp_port(), free_tcp_port());
    let server = Server::start(config(&format!(
        "[statsd]\nudp = []\ntcp = [{{ address = \"127.0.0.1:{p1}\", tls = {} }}, \
         {{ address = \"127.0.0.1:{p2}\", tls = {} }}]\n\
         [flush]\ninterval = \"200ms\"\n[http]\nenabled = false\n[admin]\nenabled = false\n\
         [[sink]]\ntype = \"graphite\"\naddress = \"{}\"\n",
        pki.listener_tls(false),
        pki.listener_tls(true),
        graphite.addr
    )));
    let stats = server.running().stats.clone();
    let (tls, mutual) = (server.running().tcp[0], server.running().tcp[1]);

    // TLS: counted.
    let out = s_client(&openssl, &pki, tls, None, b"tls.plain:1|c\ntls.plain:2|c\n");
    assert!(out.contains("statsyard one"), "{out}");
    graphite.until(secs(10), |ls| {
        ls.iter()
            .filter(|l| l.name == "stats_counts.tls.plain")
            .map(|l| l.value.parse::<f64>().unwrap())
            .sum::<f64>()
            == 3.0
    });

    // Plaintext to a TLS listener: the handshake fails, nothing is counted.
    let failures = get(&stats.tls_handshake_failures);
    {
        let mut s = TcpStream::connect(tls).unwrap();
        s.write_all(b"tls.bare:1|c\n").unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
    }
    wait("the failed handshake", || {
        get(&stats.tls_handshake_failures) > failures
    });

    // Mutual TLS: without a certificate, and with another CA's, refused
    // and counted; with the CA's, counted.
    let refused = get(&stats.tls_client_certs_refused);
    s_client(&openssl, &pki, mutual, None, b"tls.mutual:100|c\n");
    wait("the refused client", || {
        get(&stats.tls_client_certs_refused) > refused
    });
    s_client(
        &openssl,
        &pki,
        mutual,
        Some("rogue"),
        b"tls.mutual:1000|c\n",
    );
    wait("the refused stranger", || {
        get(&stats.tls_client_certs_refused) > refused + 1
    });
    s_client(&openssl, &pki, mutual, Some("client"), b"tls.mutual:7|c\n");
    graphite.until(secs(10), |ls| {
        ls.iter()
            .any(|l| l.name == "stats_counts.tls.mutual" && l.value == "7")
    });
    server.stop();
    graphite.drain_for(Duration::from_millis(300));
    assert_eq!(graphite.sum("stats_counts.tls.mutual"), 7.0);
    assert_eq!(graphite.sum("stats_counts.tls.bare"), 0.0);
}

/// A bcrypt hash of `password` (cost 4: quick, for tests).
fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// `curl` a URL of the HTTPS server; returns (status, body).
fn curl(curl: &Path, pki: &Pki, url: &str, user: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new(curl);
    cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"])
        .arg("--cacert")
        .arg(pki.path("ca.pem"));
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    let out = cmd.arg(url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn https_with_basic_auth_for_curl_and_a_real_prometheus() {
    let (Some(curl_bin), Some(prometheus)) = (tool("curl"), tool("prometheus")) else {
        return;
    };
    let pki = Pki::new("statsyard https");
    let web = pki.path("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  prom: {}\n",
            bcrypt_hash("s3cret")
        ),
    )
    .unwrap();
    let http_port = free_tcp_port();
    let server = Server::start(config(&format!(
        "[statsd]\nudp = [\"127.0.0.1:0\"]\ntcp = []\n[flush]\ninterval = \"200ms\"\n\
         [http]\naddress = \"127.0.0.1:{http_port}\"\nweb_config_file = {web:?}\n\
         [admin]\nenabled = false\ntoken = \"t0ken-t0ken\"\n"
    )));
    let stats = server.running().stats.clone();
    let base = format!("https://127.0.0.1:{http_port}");

    // `/-/reload` with basic auth and the admin token both required: the
    // token goes in its own header, since basic auth takes `Authorization`.
    let reload = |token: Option<&str>| -> (u16, String) {
        let mut cmd = Command::new(&curl_bin);
        cmd.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"])
            .args(["-X", "POST", "-u", "prom:s3cret", "--cacert"])
            .arg(pki.path("ca.pem"));
        if let Some(t) = token {
            cmd.args(["-H", &format!("X-Statsyard-Token: {t}")]);
        }
        let out = cmd
            .arg(format!("{base}/-/reload"))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    };
    // Past both checks, the reload itself answers: this in-process server
    // was started from a config, not a file, so there is nothing to re-read.
    let (status, body) = reload(Some("t0ken-t0ken"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("nothing to re-read"), "{body}");
    for token in [Some("wrong"), None] {
        let (status, body) = reload(token);
        assert_eq!(status, 401, "{token:?}: {body}");
        assert!(body.contains("admin token"), "{body}");
    }

    let (status, body) = curl(
        &curl_bin,
        &pki,
        &format!("{base}/metrics"),
        Some("prom:s3cret"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("statsyard_tls_handshake_failures_total"),
        "{body}"
    );
    for user in [None, Some("prom:wrong"), Some("nobody:s3cret")] {
        let (status, _) = curl(&curl_bin, &pki, &format!("{base}/metrics"), user);
        assert_eq!(status, 401, "{user:?}");
    }
    assert_eq!(get(&stats.http_auth_failures), 3);
    // Plain HTTP to the HTTPS port gets no answer.
    let (status, _) = curl(
        &curl_bin,
        &pki,
        &format!("http://127.0.0.1:{http_port}/health"),
        Some("prom:s3cret"),
    );
    assert_ne!(status, 200);

    // A real Prometheus, with its own tls_config and basic_auth.
    send_udp(server.running().udp[0], &[b"tls.scraped:5|c"]);
    let dir = tempfile::tempdir().unwrap();
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n  - job_name: statsyard\n    scheme: https\n\
             \x20   tls_config:\n      ca_file: {ca:?}\n\
             \x20   basic_auth:\n      username: prom\n      password: s3cret\n\
             \x20   static_configs:\n      - targets: ['127.0.0.1:{http_port}']\n",
            ca = pki.path("ca.pem"),
        ),
    )
    .unwrap();
    let prom_addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let _prom = Proc(
        Command::new(prometheus)
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus starts"),
    );
    let query = |q: &str| -> Option<f64> {
        let url = format!(
            "http://{prom_addr}/api/v1/query?query={}",
            q.replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
        );
        let out = Command::new(&curl_bin).args(["-s", &url]).output().ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let end = Instant::now() + secs(30);
    loop {
        if query("up{job=\"statsyard\"}") == Some(1.0) && query("tls_scraped_total") == Some(5.0) {
            break;
        }
        assert!(
            Instant::now() < end,
            "prometheus never scraped over HTTPS: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    server.stop();
}

#[test]
fn a_reload_rotates_a_listeners_certificate_without_a_restart() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let pki = Pki::new("statsyard before");
    let (tcp_port, http_port) = (free_tcp_port(), free_tcp_port());
    let tcp: SocketAddr = ([127, 0, 0, 1], tcp_port).into();
    let http: SocketAddr = ([127, 0, 0, 1], http_port).into();
    let file = pki.path("statsyard.toml");
    std::fs::write(
        &file,
        format!(
            "[statsd]\nudp = []\ntcp = [{{ address = \"127.0.0.1:{tcp_port}\", tls = {} }}]\n\
             [http]\naddress = \"127.0.0.1:{http_port}\"\n[admin]\nenabled = false\n",
            pki.listener_tls(false)
        ),
    )
    .unwrap();
    let p = Proc::statsyard(&file, &pki.path("stderr.log"));
    p.wait_tcp(http);
    let out = s_client(&openssl, &pki, tcp, None, b"");
    assert!(out.contains("statsyard before"), "{out}");

    // New files under the same names; the config itself is unchanged.
    pki.rotate("statsyard after");
    let (status, _, body) = crate::http::raw_request(
        http,
        b"POST /-/reload HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("[statsd] tcp 127.0.0.1:{tcp_port} tls")),
        "{body}"
    );
    // The new certificate is signed by the new CA: trust that one now.
    std::fs::copy(pki.path("ca2.pem"), pki.path("ca.pem")).unwrap();
    let out = s_client(&openssl, &pki, tcp, None, b"");
    assert!(out.contains("statsyard after"), "{out}");
}

#[test]
fn allow_lists_refuse_and_count_clients_of_other_networks() {
    // Only 127.0.0.2 may send: 127.0.0.1 is another network here.
    let server = Server::start(config(
        "[statsd]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\nallow = [\"127.0.0.2\"]\n\
         [http]\naddress = \"127.0.0.1:0\"\nallow = [\"10.0.0.0/8\"]\n[admin]\nenabled = false\n",
    ));
    let stats = server.running().stats.clone();
    for addr in [server.running().tcp[0], server.running().http.unwrap()] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(secs(5))).unwrap();
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut buf = [0u8; 64];
        // Closed without an answer.
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    }
    wait("two refusals", || get(&stats.refused_by_allow) >= 2);
    // UDP: a datagram from outside the list is dropped before it is
    // parsed, and counted; one from inside is served.
    let udp = server.udp();
    let outside = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    outside.send_to(b"allow.refused:1|c", udp).unwrap();
    wait("the UDP refusal", || get(&stats.refused_by_allow) >= 3);
    let inside = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    inside.send_to(b"allow.served:1|c", udp).unwrap();
    wait("the allowed datagram", || get(&stats.metrics_received) == 1);
    assert_eq!(get(&stats.refused_by_allow), 3);
    assert_eq!(get(&stats.packets_received), 1);
    server.stop();
}

/// `openssl s_server` on a free port, printing what it receives; with
/// `client_ca`, clients must present a certificate signed by it.
struct SServer {
    proc: Proc,
    addr: SocketAddr,
    out: PathBuf,
}

impl SServer {
    fn start(openssl: &Path, pki: &Pki, client_ca: bool) -> SServer {
        SServer::start_with(openssl, pki, client_ca, false)
    }

    /// With `answers`, its stdin is /dev/zero, which it sends to each
    /// client: an HTTP client then reads a bad answer and tries again.
    /// (Without anything to send, `s_server` keeps a mutual-TLS client's
    /// request unread.)
    fn start_with(openssl: &Path, pki: &Pki, client_ca: bool, answers: bool) -> SServer {
        let port = free_tcp_port();
        let out = pki.path(&format!("s_server-{port}.out"));
        let mut cmd = Command::new(openssl);
        cmd.args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-quiet",
        ])
        .arg("-cert")
        .arg(pki.path("server.pem"))
        .arg("-key")
        .arg(pki.path("server.key"));
        if client_ca {
            cmd.args(["-Verify", "1", "-verify_return_error"])
                .arg("-CAfile")
                .arg(pki.path("ca.pem"));
        }
        let stdin = if answers {
            Stdio::from(std::fs::File::open("/dev/zero").unwrap())
        } else {
            Stdio::piped()
        };
        let proc = Proc(
            cmd.stdin(stdin)
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .expect("openssl s_server runs"),
        );
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let end = Instant::now() + secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < end, "s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        SServer { proc, addr, out }
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

#[test]
fn graphite_sink_and_relay_destinations_deliver_over_tls() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let pki = Pki::new("carbon receiver");
    // The graphite sink verifies the receiver against the test CA.
    let carbon = SServer::start(&openssl, &pki, false);
    // The relay's destination requires a client certificate.
    let mutual = SServer::start(&openssl, &pki, true);
    let relay_port = free_tcp_port();
    let server = Server::start(config(&format!(
        "[statsd]\nudp = [\"127.0.0.1:0\"]\ntcp = []\n[flush]\ninterval = \"200ms\"\n\
         [http]\nenabled = false\n[admin]\nenabled = false\n\
         [[sink]]\ntype = \"graphite\"\naddress = \"{carbon}\"\ntls = {{ ca_file = {ca:?} }}\n\
         [relay]\nline_tcp = [\"127.0.0.1:{relay_port}\"]\nline_udp = []\npickle = []\n\
         [[relay.cluster]]\nname = \"c\"\nmethod = \"forward\"\ndestinations = [\"{mutual}\"]\n\
         tls = {{ ca_file = {ca:?}, cert_file = {cert:?}, key_file = {key:?} }}\n\
         [[relay.rule]]\nmatch = \".\"\nsend_to = [\"c\"]\n",
        carbon = carbon.addr,
        mutual = mutual.addr,
        ca = pki.path("ca.pem"),
        cert = pki.path("client.pem"),
        key = pki.path("client.key"),
    )));
    send_udp(server.running().udp[0], &[b"over.tls:4|c"]);
    {
        let mut s = TcpStream::connect(("127.0.0.1", relay_port)).unwrap();
        s.write_all(b"relayed.tls 42 1700000000\n").unwrap();
    }
    wait("the sink's lines over TLS", || {
        carbon.received().contains("stats_counts.over.tls 4 ")
    });
    wait("the relayed point over mutual TLS", || {
        mutual.received().contains("relayed.tls 42 1700000000")
    });
    server.stop();
    drop((carbon.proc, mutual.proc));
}

/// An agent forwarding to an aggregator whose `[aggregator] listen` requires
/// a client certificate of `pki`'s CA.
fn tls_agent(aggregator: SocketAddr, pki: &Pki, client: Option<&str>) -> Server {
    let cert = client
        .map(|c| {
            format!(
                ", cert_file = {:?}, key_file = {:?}",
                pki.path(&format!("{c}.pem")),
                pki.path(&format!("{c}.key"))
            )
        })
        .unwrap_or_default();
    Server::start(config(&format!(
        "[statsd]\nudp = [\"127.0.0.1:0\"]\ntcp = []\n[http]\nenabled = false\n\
         [admin]\nenabled = false\n[flush]\ninterval = \"300ms\"\nshutdown_timeout = \"1s\"\n\
         [forward]\ndestinations = [\"{aggregator}\"]\ntimeout = \"1s\"\n\
         tls = {{ ca_file = {:?}, server_name = \"localhost\"{cert} }}\n",
        pki.path("ca.pem")
    )))
}

#[test]
fn an_agent_forwards_to_an_aggregator_over_mutual_tls() {
    let pki = Pki::new("statsyard aggregator");
    let mut graphite = Graphite::start();
    let aggregator = Server::start(config(&format!(
        "[statsd]\nudp = []\ntcp = []\n[http]\nenabled = false\n[admin]\nenabled = false\n\
         [flush]\ninterval = \"300ms\"\n\
         [aggregator]\nlisten = {{ address = \"127.0.0.1:0\", tls = {} }}\ngrace = \"100ms\"\n\
         [[sink]]\ntype = \"graphite\"\naddress = \"{}\"\n",
        pki.listener_tls(true),
        graphite.addr
    )));
    let to = aggregator.running().aggregator.unwrap();
    let stats = aggregator.running().stats.clone();

    // The CA's client certificate: merged and flushed by the aggregator.
    let agent = tls_agent(to, &pki, Some("client"));
    send_udp(
        agent.udp(),
        &[b"mtls.ok:5|c", b"mtls.ok:2|c", b"mtls.users:a|s"],
    );
    graphite.until(secs(15), |ls| {
        ls.iter()
            .any(|l| l.name == "stats_counts.mtls.ok" && l.value == "7")
    });
    assert!(get(&agent.running().stats.forward().series) >= 2);
    assert!(get(&stats.aggregator().accepted) >= 1);

    // Another CA's certificate, and none at all: refused at the handshake
    // and counted on both sides; nothing of theirs reaches the outputs.
    for client in [Some("rogue"), None] {
        let refused = get(&stats.tls_client_certs_refused);
        let stranger = tls_agent(to, &pki, client);
        send_udp(stranger.udp(), &[b"mtls.stranger:1000|c"]);
        wait("the refused agent", || {
            get(&stats.tls_client_certs_refused) > refused
        });
        // Its share stays queued for retry; later intervals, placed while
        // the aggregator is known down, are counted as delayed.
        wait("the agent counting its undelivered share", || {
            send_udp(stranger.udp(), &[b"mtls.stranger:1|c"]);
            let f = stranger.running().stats.forward();
            get(&f.delayed) + get(&f.dropped) > 0
        });
        stranger.stop();
    }
    agent.stop();
    aggregator.stop();
    graphite.drain_for(Duration::from_millis(300));
    assert_eq!(graphite.sum("stats_counts.mtls.ok"), 7.0);
    assert_eq!(graphite.sum("stats_counts.mtls.stranger"), 0.0);
}

/// The carbon receivers over TLS: line protocol and pickle frames through
/// `openssl s_client` reach the relay's destination; the pickle listener
/// with `client_ca_file` refuses a client without a certificate.
#[test]
fn carbon_line_and_pickle_over_tls() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let pki = Pki::new("statsyard carbon");
    let mut graphite = Graphite::start();
    let (p1, p2) = (free_tcp_port(), free_tcp_port());
    let server = Server::start(config(&format!(
        "[statsd]\nudp = []\ntcp = []\n[http]\nenabled = false\n[admin]\nenabled = false\n\
         [relay]\nline_udp = []\n\
         line_tcp = [{{ address = \"127.0.0.1:{p1}\", tls = {} }}]\n\
         pickle = [{{ address = \"127.0.0.1:{p2}\", tls = {} }}]\n\
         [[relay.cluster]]\nname = \"c\"\nmethod = \"forward\"\ndestinations = [\"{}\"]\n",
        pki.listener_tls(false),
        pki.listener_tls(true),
        graphite.addr
    )));
    let stats = server.running().stats.clone();
    let (line, pickle) = (server.running().carbon_tcp[0], server.running().pickle[0]);
    let out = s_client(
        &openssl,
        &pki,
        line,
        None,
        b"tls.carbon.line 4.5 1700000000\n",
    );
    assert!(out.contains("statsyard carbon"), "{out}");
    let points: Vec<(&str, (i64, f64))> = vec![("tls.carbon.pickle", (1_700_000_001, 6.0))];
    let payload =
        serde_pickle::to_vec(&points, serde_pickle::SerOptions::new().proto_v2()).unwrap();
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend(payload);
    // Without a client certificate: refused, nothing relayed.
    let refused = get(&stats.tls_client_certs_refused);
    s_client(&openssl, &pki, pickle, None, &frame);
    wait("the refused pickle client", || {
        get(&stats.tls_client_certs_refused) > refused
    });
    s_client(&openssl, &pki, pickle, Some("client"), &frame);
    graphite.until(secs(10), |ls| {
        ls.iter()
            .any(|l| l.name == "tls.carbon.line" && l.value == "4.5")
            && ls
                .iter()
                .any(|l| l.name == "tls.carbon.pickle" && l.value == "6")
    });
    server.stop();
    graphite.drain_for(Duration::from_millis(300));
    // The refused connection's frame never arrived: one pickle point.
    assert_eq!(graphite.sum("tls.carbon.pickle"), 6.0);
}

/// The HTTP outputs over TLS with a private CA. An influxdb output verifies
/// the store against `ca_file` (the store: `openssl s_server`, which prints
/// what it decrypts). Remote-write outputs post to a statsyard whose HTTPS
/// (a web config file) requires a client certificate: with one, and
/// `server_name` checked for the IP address in its url, the request goes
/// through TLS and is answered (404: that server has no write endpoint);
/// without one, the handshake is refused and counted on both sides.
#[test]
fn http_outputs_deliver_over_tls_with_a_private_ca() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let pki = Pki::new("a store");
    let influx = SServer::start_with(&openssl, &pki, false, true);
    let web = pki.path("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
         client_ca_file: ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n",
    )
    .unwrap();
    let https_port = free_tcp_port();
    let store = Server::start(config(&format!(
        "[statsd]\nudp = []\ntcp = []\n[http]\naddress = \"127.0.0.1:{https_port}\"\n\
         web_config_file = {web:?}\n[admin]\nenabled = false\n"
    )));
    let server = Server::start(config(&format!(
        "[statsd]\nudp = [\"127.0.0.1:0\"]\ntcp = []\n[flush]\ninterval = \"200ms\"\n\
         [http]\nenabled = false\n[admin]\nenabled = false\n\
         [[sink]]\ntype = \"influxdb\"\nurl = \"https://{influx}\"\ndatabase = \"x\"\n\
         content_encoding = \"identity\"\ntls = {{ ca_file = {ca:?} }}\n\
         [[sink]]\ntype = \"prometheus_remote_write\"\nname = \"with_cert\"\n\
         url = \"https://127.0.0.1:{https_port}/api/v1/write\"\n\
         tls = {{ ca_file = {ca:?}, cert_file = {cert:?}, key_file = {key:?}, \
         server_name = \"store.statsyard.test\" }}\n\
         [[sink]]\ntype = \"prometheus_remote_write\"\nname = \"without\"\n\
         url = \"https://127.0.0.1:{https_port}/api/v1/write\"\ntls = {{ ca_file = {ca:?} }}\n",
        influx = influx.addr,
        ca = pki.path("ca.pem"),
        cert = pki.path("client.pem"),
        key = pki.path("client.key"),
    )));
    send_udp(server.running().udp[0], &[b"https.out:4|c"]);
    wait("the influxdb request over TLS", || {
        let r = influx.received();
        r.contains("POST /write?db=x") && r.contains("https.out,metric_type=counter value=4")
    });
    let sink = |name: &str| {
        server
            .running()
            .stats
            .sinks()
            .into_iter()
            .find(|k| k.name == name)
            .unwrap()
    };
    let store_stats = store.running().stats.clone();
    wait("the remote-write request answered over mutual TLS", || {
        get(&sink("with_cert").refused) > 0
    });
    assert!(
        get(&store_stats.http_client_errors) > 0,
        "the store answered 404"
    );
    wait("the certificate-less client refused", || {
        get(&store_stats.tls_client_certs_refused) > 0 && get(&sink("without").errors) > 0
    });
    assert_eq!(get(&sink("without").refused), 0, "never got an HTTP answer");
    assert_eq!(get(&sink("without").lines_sent), 0);
    drop(server);
    store.stop();
    drop(influx.proc);
}

/// `tls` on an HTTP output needs an https url, and `server_name` an IP
/// address in it.
#[test]
fn http_output_tls_is_checked() {
    let pki = Pki::new("a store");
    let ca = pki.path("ca.pem");
    for (url, tls, why) in [
        (
            "http://127.0.0.1:1",
            format!("{{ ca_file = {ca:?} }}"),
            "needs an https:// url",
        ),
        (
            "https://store.example:8086",
            "{ server_name = \"other.example\" }".to_string(),
            "server_name differs",
        ),
        (
            "https://127.0.0.1:1",
            "{ ca_file = \"missing.pem\" }".to_string(),
            "missing.pem",
        ),
    ] {
        let toml = format!(
            "[[sink]]\ntype = \"influxdb\"\nurl = \"{url}\"\ndatabase = \"x\"\ntls = {tls}\n"
        );
        let err = statsyard::config::toml::from_str(&toml, "test.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("tls") && text.contains(why), "{url}: {text}");
    }
}
