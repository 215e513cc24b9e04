//! Unit tests of `config`.

use super::*;

fn load_env(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let env: EnvVars = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    load_with(None, &env)
}

#[test]
fn defaults_are_the_embedded_monitor() {
    let s = load_env(&[]).unwrap();
    assert_eq!(s.server.bind.to_string(), "127.0.0.1:8088");
    assert_eq!(s.database.url, DatabaseUrl::Sqlite("healthmon.db".into()));
    assert_eq!(s.queue.url, None);
    assert_eq!(s.worker.concurrency, 256);
    assert_eq!(s.worker.region, "default");
}

#[test]
fn the_worker_region_comes_from_the_environment_and_is_checked() {
    let s = load_env(&[("HEALTHMON__WORKER__REGION", "us-east-1")]).unwrap();
    assert_eq!(s.worker.region, "us-east-1");
    for bad in ["", "EU", "eu west", "a_b", &"x".repeat(33)] {
        let err = load_env(&[("HEALTHMON__WORKER__REGION", bad)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker.region"), "{bad:?} gave {err:?}");
    }
}

#[test]
fn namespaced_env_overrides_defaults() {
    let s = load_env(&[
        ("HEALTHMON__SERVER__BIND", "0.0.0.0:9000"),
        ("HEALTHMON__WORKER__CONCURRENCY", "8"),
    ])
    .unwrap();
    assert_eq!(s.server.bind.to_string(), "0.0.0.0:9000");
    assert_eq!(s.worker.concurrency, 8);
}

#[test]
fn short_names_apply_but_namespaced_ones_win() {
    let s = load_env(&[
        ("DATABASE_URL", "postgres://u@h/db"),
        ("RABBITMQ_URL", "amqp://g@h/"),
    ])
    .unwrap();
    assert_eq!(
        s.database.url,
        DatabaseUrl::Postgres("postgres://u@h/db".into())
    );
    assert_eq!(s.queue.url.as_deref(), Some("amqp://g@h/"));
    let s = load_env(&[
        ("DATABASE_URL", "postgres://u@h/db"),
        ("HEALTHMON__DATABASE__URL", "sqlite://x.db"),
    ])
    .unwrap();
    assert_eq!(s.database.url, DatabaseUrl::Sqlite("x.db".into()));
}

#[test]
fn original_notes_db_variables_select_postgres() {
    let s = load_env(&[
        ("DB_HOST", "localhost"),
        ("DB_USER", "user"),
        ("DB_PASSWORD", "p@ss"),
        ("DB_NAME", "health_monitor"),
    ])
    .unwrap();
    assert_eq!(
        s.database.url,
        DatabaseUrl::Postgres("postgres://user:p%40ss@localhost:5432/health_monitor".into())
    );
    let err = load_env(&[("DB_HOST", "localhost")]).unwrap_err();
    assert!(err.to_string().contains("DB_HOST"), "{err}");
}

#[test]
fn an_unsupported_sslmode_stops_start_up_naming_database_url() {
    let err = load_env(&[(
        "HEALTHMON__DATABASE__URL",
        "postgres://db/hm?sslmode=verify-ca",
    )])
    .unwrap_err();
    assert!(err.to_string().contains("database.url"), "{err}");
    assert!(err.to_string().contains("verify-full"), "{err}");
    let ok = load_env(&[(
        "HEALTHMON__DATABASE__URL",
        "postgres://db/hm?sslmode=require",
    )]);
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn unknown_keys_are_errors_not_silently_ignored() {
    let err = load_env(&[("HEALTHMON__WORKER__CONCURENCY", "8")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("concurency"), "{err}");
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("HEALTHMON__SERVER__BIND", "not-an-address", "server.bind"),
        ("HEALTHMON__DATABASE__URL", "mysql://x", "database.url"),
        ("HEALTHMON__QUEUE__URL", "kafka://x", "queue.url"),
        ("HEALTHMON__WORKER__CONCURRENCY", "0", "worker.concurrency"),
        ("HEALTHMON__WS__SEND_QUEUE", "100", "ws.send_queue"),
    ];
    for (key, value, named) in cases {
        let err = load_env(&[(key, value)]).unwrap_err().to_string();
        assert!(err.contains(named), "{key}={value} gave {err:?}");
    }
}

#[test]
fn results_max_defaults_to_a_million_and_is_range_checked() {
    let s = load_env(&[]).unwrap();
    assert_eq!(s.queue.results_max, 1_000_000);
    let s = load_env(&[("HEALTHMON__QUEUE__RESULTS_MAX", "64")]).unwrap();
    assert_eq!(s.queue.results_max, 64);
    let s = load_env(&[("HEALTHMON__QUEUE__RESULTS_MAX", "100000000")]).unwrap();
    assert_eq!(s.queue.results_max, 100_000_000);
    for bad in ["63", "0", "-1", "100000001", "lots"] {
        let err = load_env(&[("HEALTHMON__QUEUE__RESULTS_MAX", bad)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("results_max"), "{bad:?} gave {err:?}");
    }
}

#[test]
fn logs_default_to_thirty_days_and_come_from_the_environment() {
    let s = load_env(&[]).unwrap();
    assert_eq!(s.logs.retention_days, 30);
    assert_eq!(s.logs.maintenance_interval_s, 300);
    assert_eq!(s.logs.rollup_interval_s, 5);
    assert_eq!(s.logs.rollup_retention_days, 400);
    let s = load_env(&[
        ("HEALTHMON__LOGS__RETENTION_DAYS", "7"),
        ("HEALTHMON__LOGS__MAINTENANCE_INTERVAL_S", "60"),
        ("HEALTHMON__LOGS__ROLLUP_INTERVAL_S", "2"),
    ])
    .unwrap();
    assert_eq!(s.logs.retention_days, 7);
    assert_eq!(s.logs.maintenance_interval_s, 60);
    assert_eq!(s.logs.rollup_interval_s, 2);
}

#[test]
fn bad_logs_values_name_their_key() {
    for (key, value, named) in [
        (
            "HEALTHMON__LOGS__RETENTION_DAYS",
            "0",
            "logs.retention_days",
        ),
        (
            "HEALTHMON__LOGS__RETENTION_DAYS",
            "3651",
            "logs.retention_days",
        ),
        (
            "HEALTHMON__LOGS__RETENTION_DAYS",
            "a week",
            "retention_days",
        ),
        (
            "HEALTHMON__LOGS__MAINTENANCE_INTERVAL_S",
            "0",
            "logs.maintenance_interval_s",
        ),
        (
            "HEALTHMON__LOGS__ROLLUP_INTERVAL_S",
            "3601",
            "logs.rollup_interval_s",
        ),
        (
            "HEALTHMON__LOGS__ROLLUP_RETENTION_DAYS",
            "0",
            "logs.rollup_retention_days",
        ),
        ("HEALTHMON__LOGS__RETENTION", "30", "retention"),
    ] {
        let err = load_env(&[(key, value)]).unwrap_err().to_string();
        assert!(err.contains(named), "{key}={value} gave {err:?}");
    }
    let s = load_env(&[("HEALTHMON__LOGS__RETENTION_DAYS", "3650")]).unwrap();
    assert_eq!(s.logs.retention_days, 3650);
    assert_eq!(
        s.logs.rollup_retention_days, 3650,
        "rollups are kept at least as long as logs"
    );
}

#[test]
fn checks_default_to_allowing_private_targets_with_no_extra_ranges() {
    let s = load_env(&[]).unwrap();
    assert!(!s.checks.block_private);
    assert!(s.checks.allow_cidrs.is_empty());
}

#[test]
fn checks_come_from_the_environment() {
    let s = load_env(&[
        ("HEALTHMON__CHECKS__BLOCK_PRIVATE", "true"),
        (
            "HEALTHMON__CHECKS__ALLOW_CIDRS",
            " 127.0.0.1/32, fd00::/8,10.1.2.3 ,::1,192.168.7.9/16,",
        ),
    ])
    .unwrap();
    assert!(s.checks.block_private);
    let nets: Vec<String> = s.checks.allow_cidrs.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        nets,
        [
            "127.0.0.1/32",
            "fd00::/8",
            "10.1.2.3/32",
            "::1/128",
            "192.168.0.0/16"
        ]
    );
}

#[test]
fn the_schedule_header_is_off_by_default_and_on_from_the_environment() {
    let s = load_env(&[]).unwrap();
    assert!(!s.checks.send_schedule_header);
    let s = load_env(&[("HEALTHMON__CHECKS__SEND_SCHEDULE_HEADER", "true")]).unwrap();
    assert!(s.checks.send_schedule_header);
    let err = load_env(&[("HEALTHMON__CHECKS__SEND_SCHEDULE_HEADER", "sometimes")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("send_schedule_header"), "{err}");
}

#[test]
fn bad_checks_values_name_their_key() {
    for bad in [
        "10.0.0.0/33",
        "fd00::/129",
        "example.com",
        "10.0.0.0/8;192.168.0.0/16",
        "10.0.0/8",
        "[::1]",
        "127.0.0.1/",
    ] {
        let err = load_env(&[("HEALTHMON__CHECKS__ALLOW_CIDRS", bad)])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "checks.allow_cidrs (from environment variable HEALTHMON__CHECKS__ALLOW_CIDRS): "
            ),
            "{bad:?} gave {err:?}"
        );
    }
    let err = load_env(&[("HEALTHMON__CHECKS__BLOCK_PRIVATE", "maybe")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("block_private"), "{err}");
    let err = load_env(&[("HEALTHMON__CHECKS__BLOCK_PRIVAT", "true")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("block_privat"), "{err}");
}

#[test]
fn checks_come_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[checks]\nblock_private = true\nallow_cidrs = \"10.0.0.0/8\"\n",
    )
    .unwrap();
    let s = load_with(Some(&path), &EnvVars::new()).unwrap();
    assert!(s.checks.block_private);
    assert_eq!(s.checks.allow_cidrs, ["10.0.0.0/8".parse().unwrap()]);
}

#[test]
fn a_config_file_overrides_defaults_and_env_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[server]\nbind = \"127.0.0.1:1234\"\n[worker]\nconcurrency = 3\n",
    )
    .unwrap();
    let env: EnvVars = [("HEALTHMON__WORKER__CONCURRENCY".to_owned(), "5".to_owned())].into();
    let s = load_with(Some(&path), &env).unwrap();
    assert_eq!(s.server.bind.port(), 1234);
    assert_eq!(s.worker.concurrency, 5);
    let missing = load_with(Some(&dir.path().join("nope.toml")), &EnvVars::new()).unwrap_err();
    assert!(missing.to_string().contains("--config"));
}

fn inputs(pairs: &[(&str, &str)]) -> Inputs {
    Inputs {
        env: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Inputs::default()
    }
}

#[test]
fn every_key_has_a_source_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[server]\nbind = \"127.0.0.1:1\"\n[worker]\nconcurrency = 3\n",
    )
    .unwrap();
    let dotenv = dir.path().join(".env");
    std::fs::write(
        &dotenv,
        "HEALTHMON__WS__MAX_CLIENTS=5\nHEALTHMON__WORKER__CONCURRENCY=9\n",
    )
    .unwrap();
    let mut inputs = inputs(&[
        ("HEALTHMON__SERVER__BIND", "127.0.0.1:2"),
        ("HEALTHMON__WORKER__CONCURRENCY", "4"),
        ("DATABASE_URL", "sqlite://env.db"),
    ]);
    inputs.config_file = Some(file.clone());
    inputs.add_dotenv(&dotenv).unwrap();
    inputs.flags = Flags {
        bind: Some("127.0.0.1:3".into()),
        database_url: Some("sqlite://flag.db".into()),
        region: Some("eu-west".into()),
    };
    let r = resolve(&inputs).unwrap();
    let s = r.settings().unwrap();
    assert_eq!(s.server.bind.port(), 3);
    assert_eq!(s.database.url, DatabaseUrl::Sqlite("flag.db".into()));
    // The environment wins over .env, which only fills in what it lacks.
    assert_eq!(s.worker.concurrency, 4);
    assert_eq!(s.ws.max_clients, 5);
    let source = |k: &str| r.source(k).unwrap().to_string();
    assert_eq!(source("server.bind"), "--bind");
    assert_eq!(source("database.url"), "--database-url");
    assert_eq!(s.worker.region, "eu-west");
    assert_eq!(source("worker.region"), "--region");
    assert_eq!(
        source("worker.concurrency"),
        "environment variable HEALTHMON__WORKER__CONCURRENCY"
    );
    assert_eq!(
        source("ws.max_clients"),
        ".env's HEALTHMON__WS__MAX_CLIENTS"
    );
    assert_eq!(source("worker.max_body_bytes"), "default");
    inputs.flags = Flags::default();
    inputs.env.remove("HEALTHMON__SERVER__BIND");
    let r = resolve(&inputs).unwrap();
    assert_eq!(r.source("server.bind"), Some(&Source::File(file)));
    assert_eq!(
        r.source("database.url").unwrap().to_string(),
        "environment variable DATABASE_URL"
    );
    assert_eq!(
        r.entries().len(),
        r.entries()
            .iter()
            .map(|e| &e.key)
            .collect::<std::collections::HashSet<_>>()
            .len()
    );
    assert!(
        r.entries()
            .iter()
            .any(|e| e.key == "checks.ca_file" && e.shown.is_none())
    );
}

#[test]
fn passwords_are_never_shown() {
    let r = resolve(&inputs(&[
        ("DB_HOST", "127.0.0.1"),
        ("DB_USER", "hm"),
        ("DB_PASSWORD", "hunter2"),
        ("DB_NAME", "healthmon"),
        ("RABBITMQ_URL", "amqp://guest:rabbitpw@127.0.0.1:5672/%2f"),
    ]))
    .unwrap();
    let text = r.render();
    assert!(
        !text.contains("hunter2") && !text.contains("rabbitpw"),
        "{text}"
    );
    assert!(
        text.contains("postgres://hm:***@127.0.0.1:5432/healthmon"),
        "{text}"
    );
    assert!(
        text.contains("amqp://guest:***@127.0.0.1:5672/%2f"),
        "{text}"
    );
    assert!(
        text.contains("environment variables DB_HOST/DB_USER/DB_PASSWORD/DB_NAME"),
        "{text}"
    );
    assert_eq!(
        mask_url("postgres://h/db?user=u&password=pw"),
        "postgres://h/db?user=u&password=***"
    );
}

#[test]
fn a_bad_value_names_the_source_that_set_it() {
    let err = resolve(&inputs(&[("HEALTHMON__WORKER__CONCURRENCY", "0")]))
        .unwrap()
        .settings()
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "worker.concurrency (from environment variable HEALTHMON__WORKER__CONCURRENCY)"
        ),
        "{err}"
    );
}

#[test]
fn single_underscore_variables_that_look_like_keys_are_warned_about() {
    let r = resolve(&inputs(&[
        ("HEALTHMON_SERVER_BIND", "0.0.0.0:1"),
        ("HEALTHMON_ALLOW_ANONYMOUS", "true"),
        ("HEALTHMON_WORKER_THREADS", "2"),
        ("HEALTHMON_TEST_PG", "postgres://x"),
        ("HEALTHMON__SERVER__BIND", "127.0.0.1:1"),
    ]))
    .unwrap();
    let w = r.warnings();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(
        w[0].starts_with(
            "HEALTHMON_ALLOW_ANONYMOUS is ignored: did you mean HEALTHMON__AUTH__ALLOW_ANONYMOUS?"
        ),
        "{w:?}"
    );
    assert!(
        w[1].contains("did you mean HEALTHMON__SERVER__BIND?"),
        "{w:?}"
    );
    assert!(
        w[2].contains("keys of [worker] are set as HEALTHMON__WORKER__KEY"),
        "{w:?}"
    );
}
