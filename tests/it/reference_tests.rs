//! The reference statsd's own black-box tests of its graphite backend
//! (`test/graphite_*.js` in the npm package `statsd` 0.9.0), run against
//! statsyard: each file's `spawn('node', ['stats.js', path])` is pointed at
//! `statsyard --statsd-config path`, and everything else is theirs (their
//! config.js, their UDP sends, their Graphite receiver reading a flush until
//! the connection closes). Every assertion must pass, except those a
//! documented difference explains ([`DOCUMENTED`]).
//!
//! Needs node, the package (`npm install --prefix target/reference-statsd
//! statsd@0.9.0`) and its test-only dependencies (nodeunit, underscore,
//! temp), which `.ci/run` installs. The files use fixed ports (8125, 8126,
//! 31337), so they run one after the other.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Test cases that fail for a documented difference: (file, case, the
/// failing assertion's message, where it is documented).
const DOCUMENTED: &[(&str, &str, &str, &str)] = &[
    (
        "graphite_tests.js",
        "graphite_tags_are_supported",
        "Did not map 'foo+bar;tag1=val1;tag3=val3;tag2=val2'",
        "docs/compatibility.md: tags are sorted in a series' name",
    ),
    (
        "graphite_tests.js",
        "dogstatsd_tags_are_supported",
        "Did not map 'foo+bar:250|c|#tag1:val;1,tag3:val3,tag2:val2'",
        "docs/compatibility.md: tags are sorted in a series' name",
    ),
];

/// The reference package and nodeunit, or `None` (after saying why) when
/// they are missing outside CI.
fn reference() -> Option<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reference-statsd/node_modules");
    let (pkg, nodeunit) = (root.join("statsd"), root.join(".bin/nodeunit"));
    if pkg.join("stats.js").exists() && nodeunit.exists() {
        return Some((pkg, nodeunit));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the reference statsd or nodeunit is missing under target/reference-statsd; .ci/run installs them"
    );
    eprintln!("skipping: the reference statsd's tests are not installed (see .ci/run)");
    None
}

/// One nodeunit run: the cases that passed and failed, and the output.
struct Run {
    passed: Vec<String>,
    failed: Vec<String>,
    output: String,
}

fn run(nodeunit: &Path, pkg: &Path, file: &Path) -> Run {
    let started = Instant::now();
    let out = Command::new(nodeunit)
        .arg(file)
        .current_dir(pkg)
        .env("STATSYARD_BIN", env!("CARGO_BIN_EXE_statsyard"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("nodeunit runs");
    assert!(
        started.elapsed() < Duration::from_secs(600),
        "{} took {:?}",
        file.display(),
        started.elapsed()
    );
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    // Colour codes off the case lines: "✔ name", "✖ name".
    let plain: String = output
        .split('\u{1b}')
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                part.split_once('m').map_or(part, |(_, rest)| rest)
            }
        })
        .collect();
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for line in plain.lines() {
        if let Some(case) = line.strip_prefix("✔ ") {
            passed.push(case.trim().to_string());
        } else if let Some(case) = line.strip_prefix("✖ ") {
            failed.push(case.trim().to_string());
        }
    }
    Run {
        passed,
        failed,
        output: plain,
    }
}

#[test]
fn the_reference_statsds_graphite_tests_pass_against_statsyard() {
    let Some((pkg, nodeunit)) = reference() else {
        return;
    };
    // Patched copies next to the originals, so that their `require`s
    // resolve the same way.
    let dir = pkg.join("test-statsyard");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(pkg.join("test"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("graphite_") && n.ends_with(".js"))
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 8, "{files:?}");
    let mut report = Vec::new();
    for original in &files {
        let name = original.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(original).unwrap();
        let spawn = "spawn('node',['stats.js', path])";
        assert!(text.contains(spawn), "{name} no longer spawns {spawn}");
        let patched = text.replace(
            spawn,
            "spawn(process.env.STATSYARD_BIN, ['--statsd-config', path, '--http-address', 'off'])",
        );
        let copy = dir.join(&name);
        std::fs::write(&copy, patched).unwrap();
        let r = run(&nodeunit, &pkg, &copy);
        assert!(
            !r.passed.is_empty() || !r.failed.is_empty(),
            "{name}: no test case ran:\n{}",
            r.output
        );
        for case in &r.failed {
            let known = DOCUMENTED.iter().find(|(f, c, ..)| *f == name && c == case);
            match known {
                Some((_, _, message, _)) => assert!(
                    r.output.contains(message),
                    "{name} {case} failed otherwise than documented:\n{}",
                    r.output
                ),
                None => panic!("{name}: {case} failed:\n{}", r.output),
            }
        }
        report.push(format!(
            "{name}: {} passed, {} failed (documented)",
            r.passed.len(),
            r.failed.len()
        ));
    }
    eprintln!("{}", report.join("\n"));
}
