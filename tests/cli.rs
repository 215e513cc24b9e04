//! The command line as a person meets it: the real `healthmon` binary, run
//! in a fresh directory with an empty environment (so neither this
//! machine's variables nor a `.env` of the repository leak in).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a failed test"
)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest a test waits for the monitor to become ready.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// `healthmon ARGS` in `dir` with only `env` set.
fn healthmon(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_healthmon"));
    cmd.current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// Runs to the end; returns (exit code, stdout, stderr).
fn run(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = healthmon(dir, env, args).output().expect("run healthmon");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The line of `config show` for `field` in `[section]`, squeezed to
/// `field = value # source`.
fn shown(text: &str, section: &str, field: &str) -> String {
    let header = format!("[{section}]");
    let line = text
        .lines()
        .skip_while(|l| *l != header)
        .find(|l| l.starts_with(&format!("{field} = ")))
        .unwrap_or_else(|| panic!("no {section}.{field} in:\n{text}"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Kills the monitor when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn flags_win_over_the_file_dotenv_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[server]\nbind = \"127.0.0.1:1111\"\n[database]\nurl = \"sqlite://file.db\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "DATABASE_URL=sqlite://dotenv.db\n").unwrap();
    let env = [
        ("HEALTHMON__SERVER__BIND", "127.0.0.1:2222"),
        ("HEALTHMON__DATABASE__URL", "sqlite://env.db"),
    ];
    let flags = [
        "--config",
        "c.toml",
        "--bind",
        "127.0.0.1:3333",
        "--database-url",
        "sqlite://flag.db",
    ];
    let (code, out, err) = run(
        dir.path(),
        &env,
        &[&flags[..], &["config", "show"]].concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        shown(&out, "server", "bind"),
        "bind = \"127.0.0.1:3333\" # --bind"
    );
    assert_eq!(
        shown(&out, "database", "url"),
        "url = \"sqlite://flag.db\" # --database-url"
    );
    // Without the flags the environment wins, as before.
    let (_, out, _) = run(dir.path(), &env, &["--config", "c.toml", "config", "show"]);
    assert_eq!(
        shown(&out, "server", "bind"),
        "bind = \"127.0.0.1:2222\" # environment variable HEALTHMON__SERVER__BIND"
    );
    // The flag is what a command really uses: the key lands in flag.db.
    let (code, _, err) = run(
        dir.path(),
        &env,
        &[
            &flags[..],
            &["keys", "create", "--name", "ci", "--scope", "read"],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(dir.path().join("flag.db").exists());
    assert!(!dir.path().join("env.db").exists());
}

#[test]
fn config_show_names_every_source_and_hides_passwords() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), "[worker]\nconcurrency = 7\n").unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "DB_HOST=127.0.0.1\nDB_PORT=5433\nDB_USER=hm\nDB_PASSWORD=hunter2\nDB_NAME=healthmon\n",
    )
    .unwrap();
    let env = [
        ("HEALTHMON__WS__MAX_CLIENTS", "5"),
        ("RABBITMQ_URL", "amqp://guest:rabbitpw@127.0.0.1:5672/%2f"),
    ];
    let (code, out, err) = run(dir.path(), &env, &["--config", "c.toml", "config", "show"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        shown(&out, "worker", "concurrency"),
        "concurrency = 7 # c.toml (--config)"
    );
    assert_eq!(
        shown(&out, "database", "url"),
        "url = \"postgres://hm:***@127.0.0.1:5433/healthmon\" \
         # .env's DB_HOST/DB_PORT/DB_USER/DB_PASSWORD/DB_NAME"
    );
    assert_eq!(
        shown(&out, "queue", "url"),
        "url = \"amqp://guest:***@127.0.0.1:5672/%2f\" # environment variable RABBITMQ_URL"
    );
    assert_eq!(
        shown(&out, "ws", "max_clients"),
        "max_clients = 5 # environment variable HEALTHMON__WS__MAX_CLIENTS"
    );
    assert_eq!(
        shown(&out, "database", "pool_size"),
        "pool_size = 8 # default"
    );
    for secret in ["hunter2", "rabbitpw"] {
        assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
    }
}

#[test]
fn a_single_underscore_variable_is_warned_about_once_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("HEALTHMON_SERVER_BIND", "127.0.0.1:9"),
        ("HEALTHMON_TEST_PG", "not a setting"),
    ];
    let want = "HEALTHMON_SERVER_BIND is ignored: did you mean HEALTHMON__SERVER__BIND?";
    let (code, out, err) = run(dir.path(), &env, &["config", "show"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches(want).count(), 1, "{err}");
    assert!(!err.contains("HEALTHMON_TEST_PG"), "{err}");
    assert_eq!(
        shown(&out, "server", "bind"),
        "bind = \"127.0.0.1:8088\" # default"
    );
    // At start-up too (a keys command starts the same way as the monitor).
    let (code, _, err) = run(dir.path(), &env, &["keys", "list"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches(want).count(), 1, "{err}");
}

#[test]
fn healthcheck_is_0_for_a_ready_monitor_and_1_for_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bind = format!("127.0.0.1:{}", closed_port());
    let (code, out, err) = run(dir.path(), &[], &["healthcheck", "--bind", &bind]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("http://{bind}/readyz")) && err.contains("connection refused"),
        "{err}"
    );

    let monitor = Running(
        healthmon(dir.path(), &[], &["--bind", &bind])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the monitor"),
    );
    let start = Instant::now();
    loop {
        let (code, out, err) = run(dir.path(), &[], &["healthcheck", "--bind", &bind]);
        if code == 0 {
            assert!(out.contains("ready"), "{out}");
            break;
        }
        assert!(
            start.elapsed() < READY_WITHIN,
            "not ready within {READY_WITHIN:?}: {err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // --url needs no configuration; a bare HOST:PORT is taken as http://.
    let (code, _, err) = run(dir.path(), &[], &["healthcheck", "--url", &bind]);
    assert_eq!(code, 0, "{err}");
    drop(monitor);
}

#[test]
fn version_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(dir.path(), &[], &["--version"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("healthmon {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, out, err) = run(dir.path(), &[], &["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("complete") && out.contains("healthcheck") && out.contains("--database-url"),
        "{out}"
    );
}

#[test]
fn an_error_is_one_line_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("RUST_BACKTRACE", "1")];
    let create = ["keys", "create", "--name", "ci", "--scope", "read"];
    let (code, _, err) = run(dir.path(), &env, &create);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(dir.path(), &env, &create);
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "error: a key named \"ci\" exists already");
    // --debug asks for the full form.
    let (code, _, err) = run(dir.path(), &env, &[&["--debug"][..], &create].concat());
    assert_eq!(code, 1);
    assert!(err.contains("exists already"), "{err}");

    // An error that quotes its cause says it once.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run(dir.path(), &env, &["--bind", &bind]);
    assert_eq!(code, 1, "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in {err}"));
    assert!(line.contains(&bind), "{line}");
    assert_eq!(line.to_lowercase().matches("address").count(), 1, "{line}");
    assert!(!err.contains("backtrace"), "{err}");
}

#[test]
fn a_closed_postgresql_port_is_named_with_the_setting_that_chose_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let url = format!("postgres://hm:hunter2@127.0.0.1:{port}/healthmon?sslmode=disable");
    let (code, _, err) = run(dir.path(), &[], &["--database-url", &url, "keys", "list"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        format!(
            "error: cannot open the database: PostgreSQL at 127.0.0.1:{port} \
             (database healthmon, from --database-url): connection refused"
        )
    );
    // As after `cp .env.example .env` with no server running.
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "DB_HOST=127.0.0.1\nDB_PORT={port}\nDB_USER=hm\nDB_PASSWORD=hunter2\n\
             DB_NAME=healthmon\n"
        ),
    )
    .unwrap();
    let (code, _, err) = run(dir.path(), &[], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "PostgreSQL at 127.0.0.1:{port} (database healthmon, from .env's DB_HOST/DB_PORT/"
        )) && err.contains("connection refused"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn a_broker_that_cannot_be_reached_is_named_with_the_setting_that_chose_it() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let broker = format!("amqp://guest:guest@127.0.0.1:{}/%2f", closed_port());
    let bind = format!("127.0.0.1:{}", closed_port());
    let mut child = healthmon(
        dir.path(),
        &[("RABBITMQ_URL", broker.as_str())],
        &["--bind", &bind],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start the monitor");
    let stderr = child.stderr.take().expect("stderr");
    let monitor = Running(child);
    // The broker is waited for, not fatal: read lines until its warning
    // (the reader ends when the process is dropped below, so no hang).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + READY_WITHIN;
    let mut seen = Vec::new();
    let warning = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("cannot connect to RabbitMQ") => break line,
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "no broker warning within {READY_WITHIN:?}:\n{}",
                seen.join("\n")
            ),
        }
    };
    drop(monitor);
    assert!(
        warning.contains("queue.url from environment variable RABBITMQ_URL"),
        "{warning}"
    );
    assert!(!warning.contains("guest:guest"), "no password: {warning}");
}
