//! deploy/: every example and packaged config is one statsyard accepts, and
//! every Kubernetes manifest is well-formed YAML with the fields its kind
//! needs.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::support::bin;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `statsyard check-config` on `file`, which must succeed and say ok.
fn check_config(file: &Path) {
    let out = bin()
        .args(["check-config", &file.display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", file.display());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": ok"),
        "{}",
        file.display()
    );
    // An example that starts with a warning would teach a mistake.
    assert!(!stderr.contains("warning"), "{}: {stderr}", file.display());
}

fn files(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_config_passes_check_config() {
    let examples = files("deploy/examples", &["toml", "js"]);
    let names: Vec<String> = examples
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // The jobs the examples are promised for.
    for must in [
        "graphite.toml",
        "prometheus.toml",
        "relay.toml",
        "all-in-one.toml",
        "statsd-config.js",
    ] {
        assert!(names.iter().any(|n| n == must), "missing example {must}");
    }
    for f in examples {
        check_config(&f);
    }
    check_config(&root().join("deploy/container/statsyard.toml"));
    check_config(&root().join("deploy/debian/statsyard.toml"));
}

#[test]
fn man_page_and_completions_come_from_the_cli_definition() {
    let run = |args: &[&str]| {
        let out = bin().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let man = run(&["man"]);
    assert!(man.contains(".TH statsyard 1"), "{man}");
    for sub in [
        "statsyard check\\-config",
        "statsyard relay",
        "statsyard completions",
    ] {
        assert!(man.contains(sub), "man page lacks {sub}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        assert!(
            script.contains("check-config") && script.contains("statsd-config"),
            "{shell}"
        );
    }
}

#[test]
fn systemd_unit_is_hardened_and_reloads_with_sighup() {
    let unit = std::fs::read_to_string(root().join("deploy/systemd/statsyard.service")).unwrap();
    for line in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/bin/statsyard --config /etc/statsyard/statsyard.toml",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| {
            <Value as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for k in path.split('.') {
        cur = cur
            .get(k)
            .unwrap_or_else(|| panic!("missing `{path}` (at `{k}`) in {v:?}"));
    }
    cur
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string"))
}

#[test]
fn kubernetes_manifests_have_what_their_kind_needs() {
    let mut kinds = Vec::new();
    let mut config_toml = None;
    for f in files("deploy/kubernetes", &["yaml", "yml"]) {
        for d in docs(&f) {
            let kind = str_at(&d, "kind").to_string();
            assert!(!str_at(&d, "apiVersion").is_empty());
            assert!(!str_at(&d, "metadata.name").is_empty());
            match kind.as_str() {
                "DaemonSet" | "Deployment" => {
                    let sel = get(&d, "spec.selector.matchLabels");
                    let labels = get(&d, "spec.template.metadata.labels");
                    for (k, v) in sel.as_mapping().unwrap() {
                        assert_eq!(labels.get(k), Some(v), "{kind}: selector must match");
                    }
                    let spec = get(&d, "spec.template.spec");
                    assert_eq!(
                        get(spec, "securityContext.runAsNonRoot").as_bool(),
                        Some(true)
                    );
                    let containers = get(spec, "containers").as_sequence().unwrap();
                    assert!(!containers.is_empty());
                    for c in containers {
                        assert!(!str_at(c, "image").is_empty());
                        assert_eq!(str_at(c, "readinessProbe.httpGet.path"), "/health");
                        assert_eq!(str_at(c, "livenessProbe.httpGet.path"), "/health");
                        let ports = get(c, "ports").as_sequence().unwrap();
                        let udp = ports.iter().any(|p| {
                            p.get("containerPort").and_then(Value::as_u64) == Some(8125)
                                && p.get("protocol").and_then(Value::as_str) == Some("UDP")
                        });
                        assert!(udp, "{kind}: statsd UDP 8125");
                        assert_eq!(
                            get(c, "securityContext.allowPrivilegeEscalation").as_bool(),
                            Some(false)
                        );
                    }
                }
                "Service" => {
                    assert!(get(&d, "spec.selector").as_mapping().is_some());
                    assert!(!get(&d, "spec.ports").as_sequence().unwrap().is_empty());
                }
                "ConfigMap" => {
                    let data = get(&d, "data");
                    let toml = data.get("statsyard.toml").and_then(Value::as_str);
                    config_toml = Some(toml.expect("data.statsyard.toml").to_string());
                }
                "ServiceMonitor" => {
                    let eps = get(&d, "spec.endpoints").as_sequence().unwrap();
                    assert!(eps.iter().all(|e| str_at(e, "path") == "/metrics"));
                }
                "PodMonitor" => {
                    let eps = get(&d, "spec.podMetricsEndpoints").as_sequence().unwrap();
                    assert!(eps.iter().all(|e| str_at(e, "path") == "/metrics"));
                }
                other => panic!("{}: unexpected kind {other}", f.display()),
            }
            kinds.push(kind);
        }
    }
    for must in [
        "DaemonSet",
        "Deployment",
        "Service",
        "ConfigMap",
        "ServiceMonitor",
    ] {
        assert!(
            kinds.iter().any(|k| k == must),
            "no {must} in deploy/kubernetes"
        );
    }
    // The ConfigMap's config is one statsyard accepts.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("statsyard.toml");
    std::fs::write(&f, config_toml.expect("the ConfigMap holds statsyard.toml")).unwrap();
    check_config(&f);
}

#[test]
fn container_file_runs_unprivileged_with_a_health_check() {
    let text = std::fs::read_to_string(root().join("deploy/container/Containerfile")).unwrap();
    assert!(text.matches("\nFROM ").count() + usize::from(text.starts_with("FROM ")) >= 2);
    assert!(text.contains("HEALTHCHECK") && text.contains("/health"));
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    // Every file it copies from the build context exists.
    for l in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let src = l.split_whitespace().nth(1).unwrap();
        if src != "." {
            assert!(root().join(src).exists(), "COPY {src}: no such file");
        }
    }
}

/// Every `statsyard_*` name the Grafana dashboard queries is a family that a
/// real server with statsd, a sink and a relay serves on `/metrics`.
#[test]
fn grafana_dashboard_queries_only_served_metrics() {
    let text = std::fs::read_to_string(root().join("deploy/grafana/statsyard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 7);
    let mut names = std::collections::BTreeSet::new();
    for p in panels {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(i) = rest.find("statsyard_") {
                let tail = &rest[i..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                names.insert(tail[..end].to_string());
                rest = &tail[end..];
            }
        }
    }
    let server = crate::support::Server::start(crate::support::config(&format!(
        r#"
[statsd]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
[flush]
interval = "100ms"
shutdown_timeout = "1s"
[http]
address = "127.0.0.1:0"
[[sink]]
type = "graphite"
address = "127.0.0.1:1"
{}"#,
        crate::support::relay_section("127.0.0.1:1")
    )));
    crate::support::send_udp(server.udp(), &[b"warm:1|c"]);
    let http = server.running().http.unwrap();
    let deadline = std::time::Instant::now() + crate::support::secs(10);
    loop {
        let (_, _, body) = crate::http::get(http, "/metrics");
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !body.contains(&format!("# TYPE {n} ")))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dashboard queries {missing:?}, which /metrics does not serve"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server.stop();
}

/// The global tier's manifests: agents (DaemonSet) whose `dns:`
/// destination is the aggregators' headless Service, aggregators
/// (StatefulSet) that journal on their own volume, and both configs ones
/// statsyard accepts.
#[test]
fn kubernetes_global_tier_wires_agents_to_a_headless_aggregator_service() {
    let mut all: Vec<Value> = Vec::new();
    for f in files("deploy/kubernetes/global-tier", &["yaml", "yml"]) {
        all.extend(docs(&f));
    }
    let of =
        |kind: &str| -> Vec<&Value> { all.iter().filter(|d| str_at(d, "kind") == kind).collect() };
    for d in &all {
        assert!(!str_at(d, "apiVersion").is_empty());
        assert!(!str_at(d, "metadata.name").is_empty());
    }
    let svc = of("Service");
    assert_eq!(svc.len(), 1);
    let svc = svc[0];
    assert_eq!(str_at(svc, "spec.clusterIP"), "None", "a headless Service");
    let (svc_name, ns) = (
        str_at(svc, "metadata.name"),
        str_at(svc, "metadata.namespace"),
    );
    let forward_port = get(svc, "spec.ports")
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some("forward"))
        .and_then(|p| p.get("port"))
        .and_then(Value::as_u64)
        .expect("a forward port");
    let sts = of("StatefulSet");
    assert_eq!(sts.len(), 1);
    let sts = sts[0];
    assert_eq!(str_at(sts, "spec.serviceName"), svc_name);
    let labels = get(sts, "spec.template.metadata.labels");
    for (k, v) in get(svc, "spec.selector").as_mapping().unwrap() {
        assert_eq!(
            labels.get(k),
            Some(v),
            "the Service selects the aggregators"
        );
    }
    for (k, v) in get(sts, "spec.selector.matchLabels").as_mapping().unwrap() {
        assert_eq!(labels.get(k), Some(v));
    }
    let claims = get(sts, "spec.volumeClaimTemplates").as_sequence().unwrap();
    let claim = str_at(&claims[0], "metadata.name");
    let ds = of("DaemonSet");
    assert_eq!(ds.len(), 1);
    for w in [sts, ds[0]] {
        let spec = get(w, "spec.template.spec");
        assert_eq!(
            get(spec, "securityContext.runAsNonRoot").as_bool(),
            Some(true)
        );
        for c in get(spec, "containers").as_sequence().unwrap() {
            assert_eq!(str_at(c, "readinessProbe.httpGet.path"), "/health");
            assert_eq!(
                get(c, "securityContext.allowPrivilegeEscalation").as_bool(),
                Some(false)
            );
        }
    }
    let container = &get(sts, "spec.template.spec.containers")
        .as_sequence()
        .unwrap()[0];
    let journal_mount = get(container, "volumeMounts")
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m.get("name").and_then(Value::as_str) == Some(claim))
        .map(|m| str_at(m, "mountPath").to_string())
        .expect("the journal volume is mounted");
    // The two configs.
    let dir = tempfile::tempdir().unwrap();
    let mut roles = Vec::new();
    for cm in of("ConfigMap") {
        let text = get(cm, "data")
            .get("statsyard.toml")
            .and_then(Value::as_str)
            .expect("data.statsyard.toml");
        let f = dir
            .path()
            .join(format!("{}.toml", str_at(cm, "metadata.name")));
        std::fs::write(&f, text).unwrap();
        check_config(&f);
        let c = statsyard::config::toml::from_str(text, "k8s.toml").unwrap();
        if let Some(fw) = &c.forward {
            let want = format!("dns:{svc_name}.{ns}.svc.cluster.local:{forward_port}");
            assert!(text.contains(&want), "agents resolve {want}");
            assert_eq!(fw.destinations.len(), 1);
            roles.push("agent");
        }
        if let Some(a) = &c.aggregator {
            assert_eq!(u64::from(a.listen.port()), forward_port);
            let j = a.journal_dir.as_ref().expect("aggregators journal");
            assert!(
                j.starts_with(&journal_mount),
                "{j:?} on the volume {journal_mount}"
            );
            roles.push("aggregator");
        }
    }
    roles.sort();
    assert_eq!(roles, ["agent", "aggregator"]);
}
