//! The commands, run as a user runs them: their output, their errors, their help and logs.

use std::process::Command;

fn leadrelay(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_leadrelay"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn locate_prints_the_decision_as_json() {
    // The contract's example sighting, in Cixi.
    let (ok, out, err) = leadrelay(&["locate", "--lat", "30.1703", "--lon", "121.2661"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["assisting_court_id"], "cixi");
    assert_eq!(v["routing"], "in_jurisdiction");
    assert!(v["distance_km"].as_f64().unwrap() < 5.0);
}

#[test]
fn locate_converts_gcj02_and_knows_own_jurisdiction() {
    let (ok, out, _) = leadrelay(&[
        "locate",
        "--lat",
        "30.045404",
        "--lon",
        "121.156294",
        "--datum",
        "gcj02",
        "--requesting-court",
        "yuyao",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["routing"], "own_jurisdiction");
    let wgs_lon = v["wgs84"]["lon"].as_f64().unwrap();
    assert!((121.150..121.153).contains(&wgs_lon), "{wgs_lon}");
}

#[test]
fn locate_at_sea_goes_to_the_nearest_court() {
    let (ok, out, _) = leadrelay(&["locate", "--lat", "29.4", "--lon", "122.6"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["routing"], "nearest_court");
    assert_eq!(v["assisting_court_id"], "xiangshan");
    assert!(v["containing_court_id"].is_null());
}

#[test]
fn locate_refuses_bad_input_clearly() {
    let (ok, _, err) = leadrelay(&["locate", "--lat", "95", "--lon", "121"]);
    assert!(!ok);
    assert!(err.contains("not a valid coordinate"), "{err}");
    let (ok, _, err) = leadrelay(&["locate", "--lat", "30", "--lon", "121", "--datum", "nad27"]);
    assert!(!ok);
    assert!(err.contains("unknown datum"), "{err}");
}

#[test]
fn check_data_passes_the_shipped_data() {
    let (ok, out, err) = leadrelay(&["check-data"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("18 jurisdictions") && out.contains("0 error(s)"),
        "{out}"
    );
}

#[test]
fn check_data_refuses_jurisdictions_without_a_datum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nodatum.geojson");
    std::fs::write(
        &path,
        r#"{"type":"FeatureCollection","features":[
          {"type":"Feature","properties":{"court_id":"yuyao"},"geometry":{"type":"Polygon","coordinates":[[[121,30],[121.1,30],[121.1,30.1],[121,30.1],[121,30]]]}}]}"#,
    )
    .unwrap();
    let (ok, out, _) = leadrelay(&["check-data", "--jurisdictions", path.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("nodatum.geojson: feature #0 (court_id \"yuyao\"): no \"datum\" declared"),
        "{out}"
    );
}

#[test]
fn check_data_names_file_feature_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.geojson");
    std::fs::write(
        &path,
        r#"{"type":"FeatureCollection","datum":"wgs84","features":[
          {"type":"Feature","properties":{"court_id":"yuyao"},"geometry":{"type":"Polygon","coordinates":[[[121,30],[121.1,30],[121.1,30.1],[121,30.1]]]}},
          {"type":"Feature","properties":{"court_id":"nowhere"},"geometry":{"type":"Polygon","coordinates":[[[121,30],[121.1,30],[121.1,30.1],[121,30.1],[121,30]]]}}]}"#,
    )
    .unwrap();
    let (ok, out, _) = leadrelay(&["check-data", "--jurisdictions", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains(
            "bad.geojson: feature #0 (court_id \"yuyao\"): polygon 0, ring 0: unclosed ring"
        ),
        "{out}"
    );
    assert!(
        out.contains("feature #1 (court_id \"nowhere\"): unknown court_id"),
        "{out}"
    );
    // The same file refuses to load for locate: a clear error, not a panic.
    let (ok, _, err) = leadrelay(&[
        "locate",
        "--lat",
        "30",
        "--lon",
        "121",
        "--jurisdictions",
        path.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("unclosed ring"), "{err}");
}

#[test]
fn targets_import_then_sweep_exports_the_court_area_as_csv() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("lr.db").display());
    let lines = [
        r#"{"target_id":"P-1","kind":"person","person_id":"330281198001011230","cases":[{"case_no":"K1","court_id":"cixi","filed_on":"2024-01-01","amount_cny":30000}],"known_locations":[{"label":"domicile","lat":30.0411,"lon":121.15}]}"#,
        r#"{"target_id":"V-1","kind":"vehicle","plate":"浙B·12345","cases":[{"case_no":"K2","court_id":"yuyao","filed_on":"2024-01-01"}],"known_locations":[{"label":"home","lat":30.17,"lon":121.27}]}"#,
    ];
    let file = dir.path().join("targets.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (ok, out, err) = leadrelay(&[
        "targets",
        "import",
        file.to_str().unwrap(),
        "--database-url",
        &db,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("imported 2"), "{out}");
    // A bad line refuses the whole file.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, format!("{}\n{{\"target_id\":\"X\"}}\n", lines[0])).unwrap();
    let (ok, _, err) = leadrelay(&[
        "targets",
        "import",
        bad.to_str().unwrap(),
        "--database-url",
        &db,
    ]);
    assert!(!ok && err.contains(":2:"), "{err}");
    let csv = dir.path().join("sweep.csv");
    let (ok, _, err) = leadrelay(&[
        "sweep",
        "--court",
        "yuyao",
        "--out",
        csv.to_str().unwrap(),
        "--database-url",
        &db,
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[1].starts_with(
            "P-1,person,,330281198001011230,,domicile,30.0411,121.15,K1,cixi,2024-01-01,30000"
        ),
        "{text}"
    );
}

/// README.md's first command, shortened: the demo re-enacts the headline case on its embedded
/// broker and database, and stops cleanly.
#[test]
fn the_demo_dispatches_the_headline_case_and_stops() {
    let (ok, out, err) = leadrelay(&["demo", "--duration", "10s"]);
    assert!(ok, "{err}");
    let task = out
        .lines()
        .find(|l| l.contains("TASK") && l.contains("浙B12345"))
        .unwrap_or_else(|| panic!("no task for the headline car:\n{out}"));
    assert!(task.contains("yuyao → cixi"), "{task}");
    assert!(
        out.lines()
            .any(|l| l.contains("ALERT") && l.contains("to yuyao")),
        "{out}"
    );
    assert!(out.contains("status acknowledged"), "{out}");
}

/// Every flag of every command says in its help what applies when it is not given: clap's
/// `[default: ...]`, or the help text's own "default".
#[test]
fn every_flag_of_every_command_shows_its_default() {
    fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let takes_value = arg.get_action().takes_values();
            if arg.is_positional() || arg.is_required_set() || !takes_value {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let shown_by_clap =
                !arg.get_default_values().is_empty() && !arg.is_hide_default_value_set();
            if !shown_by_clap && !help.contains("default") {
                missing.push(format!("{path} --{}: {help}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            check(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    check(
        &<leadrelay::cli::Cli as clap::CommandFactory>::command(),
        "leadrelay",
        &mut missing,
    );
    assert!(
        missing.is_empty(),
        "flags without a default in their help:\n{}",
        missing.join("\n")
    );
    // As the user reads it.
    let (ok, out, _) = leadrelay(&["serve", "--help"]);
    assert!(ok);
    assert!(out.contains("default 127.0.0.1:8080"), "{out}");
    assert!(
        out.contains("RUST_LOG"),
        "--log-level says RUST_LOG wins:\n{out}"
    );
}

/// A port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn times(haystack: &str, needle: &str) -> usize {
    haystack
        .to_lowercase()
        .matches(&needle.to_lowercase())
        .count()
}

/// The cause of a failed start is said once: not again by each error that wraps it.
#[test]
fn a_failed_start_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("lr.db").display());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = taken.local_addr().unwrap().to_string();
    let mqtt = format!("mqtt://127.0.0.1:{}", closed_port());
    let (ok, _, err) = leadrelay(&[
        "serve",
        "--http-addr",
        &http,
        "--mqtt-url",
        &mqtt,
        "--database-url",
        &db,
    ]);
    assert!(!ok);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: HTTP: cannot listen on"), "{err}");
    assert_eq!(times(last, "address already in use"), 1, "{last}");

    let missing = dir.path().join("missing.toml");
    let (ok, _, err) = leadrelay(&["serve", "--config", missing.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(times(&err, "no such file or directory"), 1, "{err}");

    // A court the courts data does not know is named.
    let config = dir.path().join("leadrelay.toml");
    std::fs::write(
        &config,
        "[court_deadlines.atlantis]\nack_timeout = \"2m\"\n",
    )
    .unwrap();
    let (ok, _, err) = leadrelay(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("court_deadlines: \"atlantis\""), "{err}");
}

/// A database that is not there is named as such: refused once, or the server's own message
/// with its SQLSTATE, without the PostgreSQL source line it came from.
#[test]
fn database_errors_name_the_cause_once() {
    let refused = format!("postgres://postgres@127.0.0.1:{}/test", closed_port());
    let (ok, _, err) = leadrelay(&["tokens", "list", "--database-url", &refused]);
    assert!(!ok);
    assert_eq!(times(&err, "connection refused"), 1, "{err}");
    let Ok(url) = std::env::var("LEADRELAY_TEST_DATABASE_URL") else {
        return;
    };
    let (server, _) = url.rsplit_once('/').expect("a database name in the URL");
    let absent = format!("{server}/leadrelay_no_such_db");
    let (ok, _, err) = leadrelay(&["tokens", "list", "--database-url", &absent]);
    assert!(!ok);
    assert!(
        err.contains("database \"leadrelay_no_such_db\" does not exist (SQLSTATE 3D000)"),
        "{err}"
    );
    assert!(!err.contains(" at line "), "{err}");
    assert_eq!(times(&err, "does not exist"), 1, "{err}");
}

/// `DATABASE_URL` is read when `LEADRELAY_DATABASE_URL` and the flag are not given.
#[test]
fn database_url_comes_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let list = |env: &[(&str, String)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_leadrelay"))
            .args(["tokens", "list"])
            .env_remove("LEADRELAY_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    list(&[("DATABASE_URL", url("common.db"))]);
    assert!(dir.path().join("common.db").exists());
    list(&[
        ("DATABASE_URL", url("ignored.db")),
        ("LEADRELAY_DATABASE_URL", url("own.db")),
    ]);
    assert!(dir.path().join("own.db").exists());
    assert!(!dir.path().join("ignored.db").exists());
}

/// A writer whose reader is gone: the write end of a pipe whose reading process has exited.
fn pipe_nobody_reads() -> std::process::Stdio {
    let mut reader = Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let write_end = reader.stdin.take().unwrap();
    reader.wait().unwrap();
    write_end.into()
}

/// `leadrelay tokens list | head -0`: output to a reader that went away ends the command
/// quietly and successfully, as a filter killed by SIGPIPE, never with a panic.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("lr.db").display());
    let cases: [&[&str]; 5] = [
        &["tokens", "list", "--database-url", &db],
        &["sweep", "--court", "yuyao", "--database-url", &db],
        &["locate", "--lat", "30.1703", "--lon", "121.2661"],
        &["check-data"],
        &["serve", "--help"],
    ];
    for args in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_leadrelay"))
            .args(args)
            .stdout(pipe_nobody_reads())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {err}", out.status);
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

/// `serve` against a broker that is not there: lines of stderr until `until` holds for the
/// lines so far (or a minute passed), then the process is killed.
fn serve_logs(
    extra: &[&str],
    env: &[(&str, &str)],
    until: impl Fn(&[String]) -> bool,
) -> (Vec<String>, u16) {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("lr.db").display());
    let port = closed_port();
    let mqtt = format!("mqtt://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadrelay"))
        .args(["serve", "--mqtt-url", &mqtt, "--database-url", &db])
        .args(["--http-addr", "localhost:0"])
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("LEADRELAY_LOG_LEVEL")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut lines = Vec::new();
    while !until(&lines) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    (lines, port)
}

fn has(lines: &[String], level: &str, text: &str) -> bool {
    lines.iter().any(|l| l.contains(level) && l.contains(text))
}

/// A broker that cannot be reached is a warning naming it and the error from the first
/// attempt on, not only after a connection was lost; log lines carry no colour codes when
/// stderr is not a terminal; `--http-addr` takes a host name.
#[test]
fn serve_warns_of_an_unreachable_broker_in_plain_text() {
    let (lines, port) = serve_logs(&[], &[], |lines| {
        has(lines, "WARN", "MQTT ingest cannot connect") && has(lines, "INFO", "leadrelay serving")
    });
    let text = lines.join("\n");
    let warning = lines
        .iter()
        .find(|l| l.contains("MQTT ingest cannot connect"))
        .unwrap_or_else(|| panic!("no warning:\n{text}"));
    assert!(
        warning.contains(&format!("broker=127.0.0.1:{port}")),
        "{warning}"
    );
    assert!(warning.contains("Connection refused"), "{warning}");
    assert!(!text.contains('\u{1b}'), "colour codes in a pipe:\n{text}");
    assert!(has(&lines, "INFO", "http_addr=127.0.0.1:"), "{text}");
}

/// `--log-level` sets how much is logged; RUST_LOG, when set, wins over it.
#[test]
fn log_level_is_a_flag_and_rust_log_wins() {
    let (lines, _) = serve_logs(&["--log-level", "debug"], &[], |lines| {
        has(lines, "DEBUG", "") && has(lines, "WARN", "MQTT ingest cannot connect")
    });
    assert!(has(&lines, "DEBUG", ""), "{}", lines.join("\n"));
    let (lines, _) = serve_logs(
        &["--log-level", "debug"],
        &[("RUST_LOG", "warn")],
        |lines| has(lines, "WARN", "MQTT ingest cannot connect"),
    );
    let text = lines.join("\n");
    assert!(has(&lines, "WARN", "MQTT ingest cannot connect"), "{text}");
    assert!(
        !has(&lines, "INFO", "") && !has(&lines, "DEBUG", ""),
        "{text}"
    );
    let (lines, _) = serve_logs(&["--log-level", "warn"], &[], |lines| {
        has(lines, "WARN", "MQTT ingest cannot connect")
    });
    assert!(!has(&lines, "INFO", ""), "{}", lines.join("\n"));
}
