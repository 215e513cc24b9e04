//! TLS to PostgreSQL and RabbitMQ against the local servers, which `.ci/run`
//! gives a certificate for localhost and 127.0.0.1 signed by a CA it makes
//! (`HEALTHMON_TEST_PG_CA` and `HEALTHMON_TEST_AMQPS_CA` name the CA's PEM
//! file; RabbitMQ's amqps listener is 127.0.0.1:5671). Without those
//! variables the tests skip, and under CI they fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

mod common;

use common::broker::{AMQP, BusFixture};
use diesel::sql_types::{Bool, Nullable, Text};
use diesel_async::RunQueryDsl;
use healthmon::bus::Capacities;
use healthmon::bus::rabbitmq::RabbitOptions;
use healthmon::config::DatabaseUrl;
use healthmon::domain::CheckJob;
use healthmon::domain::time::now_ms;
use healthmon::store::Store;
use healthmon::store::pg_connect::Connector;
use std::time::Duration;

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
    #[diesel(sql_type = Nullable<Text>)]
    version: Option<String>,
}

/// Whether the connection `url` leads to is encrypted, and with which TLS.
async fn ssl_of(url: &str) -> Result<(bool, Option<String>), String> {
    let connector = Connector::new(url).map_err(|e| e.to_string())?;
    let mut conn = connector.connect().await.map_err(|e| e.to_string())?;
    let row: Ssl =
        diesel::sql_query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .get_result(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
    Ok((row.ssl, row.version))
}

/// The CA file named by `var`, or `None` (skip) when `.ci/run` did not set
/// up `what` (under CI that fails the test).
fn ca_from(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(ca) if std::path::Path::new(&ca).is_file() => Some(ca),
        _ => {
            common::skip::skip(
                what,
                &format!("{var} does not name a file; bash .ci/run sets it up"),
            );
            None
        }
    }
}

/// The CA of the PostgreSQL server's certificate.
fn test_ca() -> Option<String> {
    ca_from(
        "HEALTHMON_TEST_PG_CA",
        "PostgreSQL with the test CA's certificate",
    )
}

fn with_params(url: &str, params: &str) -> String {
    format!("{url}?{params}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_servers_ca_connects_encrypted_and_the_store_works() {
    let Some(ca) = test_ca() else { return };
    let Some(db) = common::pg_db().await else {
        return;
    };
    let url = with_params(&db.url, &format!("sslmode=verify-full&sslrootcert={ca}"));
    let (ssl, version) = ssl_of(&url).await.expect("a verified TLS connection");
    assert!(ssl, "the connection is not encrypted");
    assert!(version.is_some_and(|v| v.starts_with("TLSv1.")));

    // The whole store, pool and migrations included, runs over it.
    let store = Store::open(&DatabaseUrl::Postgres(url), 2)
        .await
        .expect("the store opens over verified TLS");
    store.ping().await.expect("ping");
    assert!(store.try_lead().await.expect("lock").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_server_whose_ca_is_not_trusted() {
    let Some(_ca) = test_ca() else { return };
    let Some(db) = common::pg_db().await else {
        return;
    };
    // The system's roots alone do not include the test CA.
    let err = ssl_of(&with_params(&db.url, "sslmode=verify-full"))
        .await
        .expect_err("an unverified server was accepted");
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    let err = Store::open(
        &DatabaseUrl::Postgres(with_params(&db.url, "sslmode=verify-full")),
        1,
    )
    .await
    .err()
    .expect("the store refused to open");
    assert!(err.to_string().contains("PostgreSQL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encrypts_without_a_ca_and_disable_does_not_encrypt() {
    let Some(_ca) = test_ca() else { return };
    let Some(db) = common::pg_db().await else {
        return;
    };
    let (ssl, _) = ssl_of(&with_params(&db.url, "sslmode=require"))
        .await
        .expect("require connects");
    assert!(ssl, "sslmode=require gave a plain connection");
    let (ssl, _) = ssl_of(&with_params(&db.url, "sslmode=disable"))
        .await
        .expect("disable connects");
    assert!(!ssl, "sslmode=disable gave an encrypted connection");
    // libpq's default: encrypted when the server offers it.
    let (ssl, _) = ssl_of(&db.url).await.expect("prefer connects");
    assert!(ssl, "the default did not use the server's TLS");
}

/// The CA of the broker's amqps listener.
fn amqps_ca() -> Option<String> {
    ca_from(
        "HEALTHMON_TEST_AMQPS_CA",
        "RabbitMQ's amqps listener on 127.0.0.1:5671",
    )
}

/// Options for a bus on `url` with room for a few messages.
fn options(url: &str, prefix: &str) -> RabbitOptions {
    let caps = Capacities {
        jobs: 16,
        results: 16,
        events: 16,
        schedule: 16,
    };
    RabbitOptions::new(url, prefix, 2, 4, caps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_with_the_brokers_ca_carries_jobs_and_without_it_never_connects() {
    let Some(ca) = amqps_ca() else { return };
    // What the test declares is deleted over the plain listener.
    let mut fx = BusFixture::new(AMQP);
    let url = format!("amqps://guest:guest@127.0.0.1:5671/%2f?cacertfile={ca}");
    let bus = fx.start(options(&url, &fx.prefix));
    assert!(
        bus.ready(Duration::from_secs(20)).await,
        "no verified TLS connection to the broker"
    );
    let mut jobs = bus.consume_jobs().expect("a consumer");
    let job = CheckJob {
        service_id: healthmon::domain::ServiceId(7),
        url: "http://127.0.0.1:1/".into(),
        timeout_ms: 1000,
        interval_ms: 60_000,
        expected_statuses: None,
        scheduled_at: now_ms(),
        check: Default::default(),
        region: None,
    };
    bus.publish_job(job).await.expect("published over TLS");
    let got = tokio::time::timeout(Duration::from_secs(10), jobs.next())
        .await
        .expect("the job arrives")
        .expect("a delivery");
    assert_eq!(got.msg.service_id, healthmon::domain::ServiceId(7));
    got.ack().await.expect("ack");

    // Without the CA the broker's certificate is not trusted: no connection.
    let untrusted = "amqps://guest:guest@127.0.0.1:5671/%2f";
    let bus = fx.start(options(untrusted, &format!("{}_x", fx.prefix)));
    assert!(
        !bus.ready(Duration::from_secs(3)).await,
        "connected to a broker whose certificate is not trusted"
    );
}
