//! The RabbitMQ bus against a real broker (127.0.0.1:5672 unless
//! `HEALTHMON_TEST_RABBITMQ_URL` says otherwise), at the library level.
//!
//! Each test uses its own `queue.prefix` (`t_<unique>`) through a
//! [`BusFixture`], which stops its buses and deletes their queues and
//! exchanges when dropped. Under CI an unreachable broker fails the
//! tests; elsewhere they are skipped through `common::skip`. The
//! broker-restart test (`rabbitmqctl stop_app` / `start_app`) takes the
//! broker exclusively, so the other tests in this file wait for it (and it
//! for them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

mod common;

use amqprs::BasicProperties;
use amqprs::channel::{BasicGetArguments, BasicPublishArguments, Channel, QueueDeclareArguments};
use amqprs::connection::Connection;
use common::broker::{BrokerStopped, BusFixture, raw_args, unique_prefix};
use healthmon::bus::rabbitmq::{
    JOBS_PER_MESSAGE, Names, RESULTS_PER_MESSAGE, RESULTS_QUEUED_MAX, RabbitOptions,
};
use healthmon::bus::{Bus, BusError, Capacities, Resync, ScheduleSignal};
use healthmon::domain::event::ScheduleUpdate;
use healthmon::domain::time::now_ms;
use healthmon::domain::{CheckJob, CheckResult, Event, ServiceId, Status};
use std::process::Command;
use std::time::Duration;
use tokio::sync::RwLock;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Long enough for anything that should happen on a healthy local broker.
const SOON: Duration = Duration::from_secs(10);
/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(400);

/// Shared by the ordinary tests, exclusive for the broker restart.
static BROKER: RwLock<()> = RwLock::const_new(());

fn url() -> String {
    std::env::var("HEALTHMON_TEST_RABBITMQ_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// The broker URL, or `None` (skip) when it is unreachable outside CI.
async fn broker() -> Option<String> {
    let url = url();
    let why = match timeout(Duration::from_secs(5), Connection::open(&raw_args(&url))).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            return Some(url);
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 5 s".to_owned(),
    };
    let shown = url.split('@').next_back().unwrap_or_default();
    common::skip::skip(&format!("RabbitMQ at {shown}"), &why);
    None
}

/// A prefix of the test's own on the broker, shared with the other tests
/// but the restart test; `None` when the test was skipped.
async fn fixture() -> Option<BusFixture> {
    let url = broker().await?;
    Some(BusFixture::new(&url).holding(BROKER.read().await))
}

/// The same, with the broker to this test alone (it restarts it).
async fn exclusive_fixture() -> Option<BusFixture> {
    let url = broker().await?;
    Some(BusFixture::new(&url).holding(BROKER.write().await))
}

fn options(url: &str, prefix: &str) -> RabbitOptions {
    let caps = Capacities {
        jobs: 64,
        results: 64,
        events: 64,
        schedule: 64,
    };
    let mut opts = RabbitOptions::new(url, prefix, 4, 16, caps);
    opts.publish_timeout = Duration::from_secs(2);
    opts
}

fn job(id: i64, interval_ms: i64) -> CheckJob {
    CheckJob {
        service_id: ServiceId(id),
        url: "http://127.0.0.1:1/".into(),
        timeout_ms: 1000,
        interval_ms,
        expected_statuses: None,
        scheduled_at: now_ms(),
        check: Default::default(),
        region: None,
    }
}

fn result(id: i64) -> CheckResult {
    CheckResult {
        service_id: ServiceId(id),
        scheduled_at: now_ms(),
        status: Status::Up,
        latency_ms: 3,
        status_code: Some(200),
        error: None,
        checked_at: now_ms(),
        cert_expires_at: None,
        region: None,
    }
}

fn event(id: i64) -> Event {
    Event::Check {
        service_id: ServiceId(id),
        name: format!("svc{id}"),
        status: Status::Down,
        latency: 5,
        status_code: None,
        error: Some("refused".into()),
        checked_at: 1_000,
        region: None,
    }
}

async fn raw_channel(url: &str) -> (Connection, Channel) {
    let conn = Connection::open(&raw_args(url)).await.expect("connect");
    let ch = conn.open_channel(None).await.expect("channel");
    (conn, ch)
}

/// Messages ready in a queue (a passive declare).
async fn ready_count(ch: &Channel, queue: &str) -> u32 {
    let (_, n, _) = ch
        .queue_declare(QueueDeclareArguments::new(queue).passive(true).finish())
        .await
        .expect("the queue exists")
        .expect("declare-ok");
    n
}

async fn wait_count(ch: &Channel, queue: &str, want: u32) {
    let deadline = Instant::now() + SOON;
    loop {
        let n = ready_count(ch, queue).await;
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{queue} holds {n} messages, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_delivered_once_and_comes_back_when_its_consumer_goes_away() {
    let Some(mut fx) = fixture().await else {
        return;
    };
    let node = fx.start_ready(options(&fx.url, &fx.prefix)).await;

    node.publish_job(job(1, 60_000)).await.unwrap();
    let mut first = node.consume_jobs().unwrap();
    let d = timeout(SOON, first.next()).await.unwrap().unwrap();
    assert_eq!(d.msg.service_id.get(), 1);
    assert!(
        timeout(QUIET, first.next()).await.is_err(),
        "a job is delivered once"
    );

    // The consumer goes (a worker dies mid-check) with the job unacked.
    drop(first);
    drop(d);
    let mut second = node.consume_jobs().unwrap();
    let again = timeout(SOON, second.next()).await.unwrap().unwrap();
    assert_eq!(
        again.msg.service_id.get(),
        1,
        "the unacked job is redelivered"
    );
    again.ack().await.unwrap();
    assert!(timeout(QUIET, second.next()).await.is_err());
    drop(second);

    // Acked for good: a new consumer gets nothing.
    let mut third = node.consume_jobs().unwrap();
    assert!(timeout(QUIET, third.next()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_published_together_all_arrive_once() {
    let Some(mut fx) = fixture().await else {
        return;
    };
    let node = fx.start_ready(options(&fx.url, &fx.prefix)).await;

    let t = Instant::now();
    node.publish_jobs((0..1500).map(|id| job(id, 60_000)).collect())
        .await
        .unwrap();
    let published = t.elapsed();
    // They travel many to a message: a message each cost the broker a core
    // at 3,000 checks/s.
    let (conn, ch) = raw_channel(&fx.url).await;
    wait_count(
        &ch,
        &Names::new(&fx.prefix).jobs,
        1500_usize.div_ceil(JOBS_PER_MESSAGE) as u32,
    )
    .await;
    let _ = conn.close().await;
    let mut c = node.consume_jobs().unwrap();
    let mut seen = vec![false; 1500];
    for _ in 0..1500 {
        let d = timeout(SOON, c.next()).await.unwrap().unwrap();
        let id = d.msg.service_id.get() as usize;
        assert!(!seen[id], "job {id} twice");
        seen[id] = true;
        d.ack().await.unwrap();
    }
    assert!(timeout(QUIET, c.next()).await.is_err());
    eprintln!("1,500 confirmed jobs published together in {published:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_delivered_once_and_come_back_when_unacked() {
    let Some(mut fx) = fixture().await else {
        return;
    };
    let node = fx.start_ready(options(&fx.url, &fx.prefix)).await;

    for id in 1..=3 {
        node.publish_result(result(id)).await.unwrap();
    }
    let mut first = node.consume_results().unwrap();
    let mut got = vec![timeout(SOON, first.next()).await.unwrap().unwrap()];
    // The recorder's batching path: what has arrived, without waiting.
    let deadline = Instant::now() + SOON;
    while got.len() < 3 {
        match first.try_next() {
            Some(d) => got.push(d),
            None => {
                assert!(Instant::now() < deadline, "only {} results", got.len());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let mut ids: Vec<i64> = got.iter().map(|d| d.msg.service_id.get()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3]);
    assert!(timeout(QUIET, first.next()).await.is_err());

    // Ack one; drop the others unacked (the recorder could not commit).
    let mut got = got.into_iter();
    let acked = got.next().unwrap();
    let acked_id = acked.msg.service_id.get();
    acked.ack().await.unwrap();
    drop(got);
    let mut back = Vec::new();
    for _ in 0..2 {
        back.push(timeout(SOON, first.next()).await.unwrap().unwrap());
    }
    let mut back_ids: Vec<i64> = back.iter().map(|d| d.msg.service_id.get()).collect();
    back_ids.sort_unstable();
    let mut want: Vec<i64> = [1, 2, 3].into_iter().filter(|i| *i != acked_id).collect();
    want.sort_unstable();
    assert_eq!(
        back_ids, want,
        "the unacked results come back, the acked one not"
    );

    // The consumer goes with them unacked: the next consumer gets them.
    drop(first);
    drop(back);
    let mut second = node.consume_results().unwrap();
    for _ in 0..2 {
        let d = timeout(SOON, second.next()).await.unwrap().unwrap();
        assert_ne!(d.msg.service_id.get(), acked_id);
        d.ack().await.unwrap();
    }
    assert!(timeout(QUIET, second.next()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_published_at_once_share_messages_and_an_unacked_one_brings_its_message_back() {
    let Some(mut fx) = fixture().await else {
        return;
    };
    let mut opts = options(&fx.url, &fx.prefix);
    opts.results_prefetch = 1000;
    let node = fx.start_ready(opts).await;

    const N: i64 = 300;
    let sent = futures_util::future::join_all((0..N).map(|id| node.publish_result(result(id))));
    for published in timeout(SOON, sent).await.expect("confirmed in time") {
        published.expect("published");
    }
    let (conn, ch) = raw_channel(&fx.url).await;
    let messages = ready_count(&ch, &Names::new(&fx.prefix).results).await;
    let _ = conn.close().await;
    assert!(
        messages >= (N as usize).div_ceil(RESULTS_PER_MESSAGE) as u32 && messages < N as u32 / 4,
        "{N} results published at once took {messages} messages"
    );

    let mut c = node.consume_results().unwrap();
    let mut got = Vec::new();
    let mut seen = vec![false; N as usize];
    while got.len() < N as usize {
        let d = timeout(SOON, c.next())
            .await
            .expect("every result")
            .unwrap();
        let id = d.msg.service_id.get() as usize;
        assert!(!seen[id], "result {id} twice");
        seen[id] = true;
        got.push(d);
    }
    assert!(timeout(QUIET, c.next()).await.is_err(), "nothing more");

    // The recorder fails to store one result and drops it unacked; it acks
    // the others. The message that held it comes back whole (its other
    // results are stored again, which the store ignores); no other does.
    let lost = got.remove(N as usize / 2);
    let lost_id = lost.msg.service_id.get();
    drop(lost);
    for d in got {
        d.ack().await.unwrap();
    }
    let mut back = Vec::new();
    while let Ok(Some(d)) = timeout(QUIET, c.next()).await {
        back.push(d);
    }
    let ids: Vec<i64> = back.iter().map(|d| d.msg.service_id.get()).collect();
    assert!(
        ids.contains(&lost_id),
        "the dropped result came back: {ids:?}"
    );
    assert!(
        ids.len() > 1 && ids.len() <= RESULTS_PER_MESSAGE,
        "its whole message came back, and only it: {ids:?}"
    );
    for d in back {
        d.ack().await.unwrap();
    }
    assert!(timeout(QUIET, c.next()).await.is_err(), "settled for good");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_job_expires_on_the_bus() {
    let Some(mut fx) = fixture().await else {
        return;
    };
    let node = fx.start_ready(options(&fx.url, &fx.prefix)).await;

    node.publish_job(job(1, 200)).await.unwrap();
    // The job's life is its interval, 200 ms; it is looked for at 500 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.publish_job(job(2, 60_000)).await.unwrap();
    let mut c = node.consume_jobs().unwrap();
    let d = timeout(SOON, c.next()).await.unwrap().unwrap();
    assert_eq!(
        d.msg.service_id.get(),
        2,
        "the expired job is never delivered"
    );
    d.ack().await.unwrap();
    assert!(timeout(QUIET, c.next()).await.is_err());

    // Expired jobs are dropped, not dead-lettered.
    let (conn, ch) = raw_channel(&fx.url).await;
    assert_eq!(ready_count(&ch, &Names::new(&fx.prefix).dead).await, 0);
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_every_process_once() {
    let Some(mut fx) = fixture().await else {
        return;
    };
    let a = fx.start_ready(options(&fx.url, &fx.prefix)).await;
    let b = fx.start_ready(options(&fx.url, &fx.prefix)).await;
    let mut on_a = a.subscribe_events();
    let mut on_b = b.subscribe_events();
    assert!(a.ready(SOON).await && b.ready(SOON).await);

    let ev = event(8);
    let want = serde_json::to_string(&ev).unwrap();
    a.publish_event(&ev).await.unwrap();
    for rx in [&mut on_a, &mut on_b] {
        let got = timeout(SOON, rx.recv()).await.unwrap().unwrap();
        assert_eq!(&*got, want, "the same JSON as in-process");
        assert!(
            timeout(QUIET, rx.recv()).await.is_err(),
            "each process sees an event once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_events_arrives_whole_and_in_order_as_separate_events() {
    let Some(mut fx) = fixture().await else {
        return;
    };
    let a = fx.start_ready(options(&fx.url, &fx.prefix)).await;
    // Room for the whole batch: a message's events arrive at once.
    let mut roomy = options(&fx.url, &fx.prefix);
    roomy.caps.events = 1024;
    let b = fx.start_ready(roomy).await;
    let mut on_b = b.subscribe_events();
    assert!(a.ready(SOON).await && b.ready(SOON).await);

    // More than one message's worth, and an error text with a newline in it
    // (JSON escapes it, so it cannot split an event).
    let mut events: Vec<Event> = (1..=600).map(event).collect();
    if let Event::Check { error, .. } = &mut events[0] {
        *error = Some("line one\nline two".into());
    }
    a.publish_events(&events).await.unwrap();
    for ev in &events {
        let got = timeout(SOON, on_b.recv()).await.unwrap().unwrap();
        assert_eq!(&*got, serde_json::to_string(ev).unwrap());
    }
    assert!(
        timeout(QUIET, on_b.recv()).await.is_err(),
        "no more, no repeats"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_updates_fan_out_to_every_process() {
    let Some(mut fx) = fixture().await else {
        return;
    };
    let a = fx.start_ready(options(&fx.url, &fx.prefix)).await;
    let b = fx.start_ready(options(&fx.url, &fx.prefix)).await;
    let mut on_a = a.subscribe_schedule();
    let mut on_b = b.subscribe_schedule();
    assert!(a.ready(SOON).await && b.ready(SOON).await);

    // A new subscription may have missed updates: it starts with a resync.
    for rx in [&mut on_a, &mut on_b] {
        let first = timeout(SOON, rx.recv()).await.unwrap().unwrap();
        assert_eq!(first, ScheduleSignal::Resync);
    }
    b.publish_schedule(ScheduleUpdate::Remove { id: ServiceId(42) })
        .await
        .unwrap();
    for rx in [&mut on_a, &mut on_b] {
        let got = timeout(SOON, rx.recv()).await.unwrap().unwrap();
        assert_eq!(
            got,
            ScheduleSignal::Update(ScheduleUpdate::Remove { id: ServiceId(42) })
        );
        assert!(timeout(QUIET, rx.recv()).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_queue_and_the_line_moves_on() {
    let Some(mut fx) = fixture().await else {
        return;
    };
    let names = Names::new(&fx.prefix);
    let node = fx.start_ready(options(&fx.url, &fx.prefix)).await;

    // Garbage, published by something that is not healthmon.
    let (conn, ch) = raw_channel(&fx.url).await;
    let garbage = b"{not json".to_vec();
    ch.basic_publish(
        BasicProperties::default().with_delivery_mode(2).finish(),
        garbage.clone(),
        BasicPublishArguments::new("", &names.jobs),
    )
    .await
    .unwrap();
    wait_count(&ch, &names.jobs, 1).await;
    node.publish_job(job(7, 60_000)).await.unwrap();

    let mut c = node.consume_jobs().unwrap();
    let d = timeout(SOON, c.next()).await.unwrap().unwrap();
    assert_eq!(d.msg.service_id.get(), 7, "the good job behind the garbage");
    d.ack().await.unwrap();
    wait_count(&ch, &names.dead, 1).await;
    let (_, props, body) = ch
        .basic_get(BasicGetArguments::new(&names.dead).no_ack(true).finish())
        .await
        .unwrap()
        .expect("a dead letter");
    assert_eq!(body, garbage);
    assert!(header(&props, "x-healthmon-reason").starts_with("undecodable"));
    assert_eq!(header(&props, "x-healthmon-queue"), names.jobs);

    // A job that keeps coming back (its check kills the worker, say) is
    // delivered `max_deliveries` (5) times, then moved aside.
    node.publish_job(job(9, 60_000)).await.unwrap();
    let mut deliveries = 0;
    while let Ok(Some(d)) = timeout(Duration::from_secs(2), c.next()).await {
        assert_eq!(d.msg.service_id.get(), 9);
        deliveries += 1;
        assert!(deliveries <= 5, "delivered more than 5 times");
        drop(d); // unacked: back to the queue
    }
    assert_eq!(deliveries, 5);
    wait_count(&ch, &names.dead, 1).await;
    let (_, props, body) = ch
        .basic_get(BasicGetArguments::new(&names.dead).no_ack(true).finish())
        .await
        .unwrap()
        .expect("a dead letter");
    let dead: CheckJob = serde_json::from_slice(&body).unwrap();
    assert_eq!(dead.service_id, ServiceId(9));
    assert!(header(&props, "x-healthmon-reason").starts_with("delivered more than"));

    // And the line still moves.
    node.publish_job(job(10, 60_000)).await.unwrap();
    let d = timeout(SOON, c.next()).await.unwrap().unwrap();
    assert_eq!(d.msg.service_id.get(), 10);
    d.ack().await.unwrap();
    let _ = conn.close().await;
}

fn header(props: &BasicProperties, key: &str) -> String {
    let value = props
        .headers()
        .and_then(|h| h.get(&key.try_into().unwrap()))
        .unwrap_or_else(|| panic!("no {key} header"));
    <&str>::try_from(value)
        .map(str::to_owned)
        .unwrap_or_else(|_| panic!("{key} is {value:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_is_refused_at_once() {
    let caps = Capacities {
        jobs: 1,
        results: 1,
        events: 1,
        schedule: 1,
    };
    for url in [
        "amqp://",
        "kafka://h/",
        "amqp://h/?cacertfile=/ca.pem",
        "amqps://h/?cacertfile=/nonexistent/ca.pem",
    ] {
        let opts = RabbitOptions::new(url, "p", 1, 1, caps);
        assert!(
            matches!(Bus::rabbit(opts), Err(BusError::InvalidUrl(_))),
            "{url}"
        );
    }
}

async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_comes_back_by_itself_after_a_broker_restart() {
    let Some(mut fx) = exclusive_fixture().await else {
        return;
    };
    let mut opts = options(&fx.url, &fx.prefix);
    opts.publish_timeout = Duration::from_secs(1);
    let node = fx.start_ready(opts).await;
    let mut schedule = node.subscribe_schedule();
    let mut events = node.subscribe_events();
    assert!(node.ready(SOON).await);
    assert_eq!(
        timeout(SOON, schedule.recv()).await.unwrap().unwrap(),
        ScheduleSignal::Resync
    );
    let mut jobs = node.consume_jobs().unwrap();
    node.publish_job(job(1, 60_000)).await.unwrap();
    timeout(SOON, jobs.next())
        .await
        .unwrap()
        .unwrap()
        .ack()
        .await
        .unwrap();

    let stopping = Instant::now();
    let stopped = BrokerStopped::now();
    let stop_app_took = stopping.elapsed();
    let down_after_return = until("is_ready goes false", Duration::from_secs(30), || {
        !node.is_ready()
    })
    .await;

    // While the broker is away, publishing fails in bounded time.
    let t = Instant::now();
    let sent = node.publish_job(job(2, 60_000)).await;
    assert!(matches!(sent, Err(BusError::Unavailable)), "{sent:?}");
    let publish_wait = t.elapsed();
    // Bounded by the 1 s publish timeout; the slack is for a loaded machine.
    assert!(publish_wait < SOON, "{publish_wait:?}");
    assert!(node.publish_event(&event(1)).await.is_err());

    let starting = Instant::now();
    stopped.start();
    let start_app_took = starting.elapsed();
    let after_return = until("is_ready comes back", Duration::from_secs(60), || {
        node.is_ready()
    })
    .await;

    // Subscriptions are re-bound and the scheduler is told to resync.
    assert_eq!(
        timeout(SOON, schedule.recv()).await.unwrap().unwrap(),
        ScheduleSignal::Resync
    );
    assert!(node.ready(SOON).await);

    // Publishing and consuming work again, with the same consumer.
    let t = Instant::now();
    node.publish_job(job(3, 60_000)).await.unwrap();
    let d = timeout(SOON, jobs.next()).await.unwrap().unwrap();
    assert_eq!(d.msg.service_id.get(), 3);
    d.ack().await.unwrap();
    let first_job = t.elapsed();
    // Events published while the broker was away are lost: the ring marks
    // the place, once, ahead of every event of the re-bound subscription.
    let mark = timeout(SOON, events.recv()).await.unwrap().unwrap();
    assert_eq!(Resync::find(&mark), Some(Resync(1)), "{mark}");
    let ev = event(4);
    node.publish_event(&ev).await.unwrap();
    let got = timeout(SOON, events.recv()).await.unwrap().unwrap();
    assert_eq!(&*got, serde_json::to_string(&ev).unwrap());
    eprintln!(
        "broker restart: stop_app took {stop_app_took:?}, is_ready false {down_after_return:?} \
         after it returned; \
         publish gave up after {publish_wait:?}; start_app took {start_app_took:?}, ready again \
         {after_return:?} after it returned; first job round trip after {first_job:?}"
    );
}

/// Log lines written through a `tracing` subscriber, kept for assertions.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    fn lines_with(&self, needle: &str) -> usize {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_keeps_publishing_due_checks_while_the_broker_is_unreachable() {
    // No broker at all (nothing listens on port 1, and no keeper task
    // runs): every publish gives up after its bounded wait.
    let mut opts = options("amqp://guest:guest@127.0.0.1:1/", &unique_prefix());
    opts.publish_timeout = Duration::from_millis(100);
    let bus = Bus::rabbit(opts).unwrap();
    let t = Instant::now();
    let sent = bus.publish_job(job(1, 1000)).await;
    assert!(matches!(sent, Err(BusError::Unavailable)), "{sent:?}");
    assert!(
        t.elapsed() < SOON,
        "a publish waits its timeout, not forever"
    );
    assert!(!bus.is_ready());

    let dir = tempfile::tempdir().unwrap();
    let db = healthmon::config::DatabaseUrl::Sqlite(dir.path().join("t.db"));
    let store = healthmon::store::Store::open(&db, 1).await.unwrap();
    let spec = healthmon::domain::ServiceSpec {
        name: "s".into(),
        url: "http://127.0.0.1:1/".into(),
        interval: healthmon::domain::time::Seconds(1),
        timeout: healthmon::domain::time::Seconds(1),
        timeout_follows_interval: false,
        paused: false,
        expected_statuses: None,
        failure_threshold: 1,
        success_threshold: 1,
        retry_interval: None,
        channels: Vec::new(),
        check: Default::default(),
        tags: Vec::new(),
        regions: Vec::new(),
        quorum: None,
    };
    store.create_service(&spec, now_ms()).await.unwrap();
    // The scheduler runs on this thread (polled below, not spawned), so a
    // thread-local subscriber sees what it logs about each failed publish.
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let token = CancellationToken::new();
    let run = healthmon::scheduler::run(store, bus, token.clone());
    tokio::pin!(run);
    // Due at once and every second after: each round is tried and given up,
    // and the scheduler goes on to the next instead of stopping or stalling.
    let attempts = async {
        while log.lines_with("the bus is unavailable") < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        ended = &mut run => panic!("the scheduler stopped: {ended:?}"),
        () = attempts => {}
        () = tokio::time::sleep(SOON) => panic!(
            "fewer than 3 failed publishes logged within {SOON:?}: {}",
            log.lines_with("the bus is unavailable")
        ),
    }
    token.cancel();
    timeout(SOON, run).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_for_an_unreachable_broker_are_capped_and_fail_together() {
    // No broker at all (nothing listens on port 1, and no keeper task
    // runs): every result waits for a connection that never comes.
    let mut opts = options("amqp://guest:guest@127.0.0.1:1/%2f", &unique_prefix());
    let publish_timeout = Duration::from_secs(4);
    opts.publish_timeout = publish_timeout;
    let bus = Bus::rabbit(opts).expect("a usable URL");
    let over = 100;
    let started = Instant::now();
    let all = futures_util::future::join_all((0..(RESULTS_QUEUED_MAX + over) as i64).map(|id| {
        let bus = bus.clone();
        async move {
            let outcome = bus.publish_result(result(id)).await;
            (outcome, started.elapsed())
        }
    }));
    // One batch at a time would take 16,384 / 64 publish timeouts.
    let outcomes = timeout(publish_timeout * 3, all)
        .await
        .expect("every waiting result fails within one publish timeout, not one batch at a time");
    // "At once" is anything well before the publish timeout ran out.
    let refused_at_once = outcomes
        .iter()
        .filter(|(_, took)| *took < publish_timeout / 2)
        .count();
    assert!(
        (1..=over).contains(&refused_at_once),
        "{refused_at_once} results over the cap of {RESULTS_QUEUED_MAX} were refused at once"
    );
    assert!(
        outcomes
            .iter()
            .all(|(outcome, _)| matches!(outcome, Err(BusError::Unavailable))),
        "every result failed as unavailable"
    );
}

/// Runs one test of this binary again in a child process against a broker
/// that is not there, with `CI` as given (`None`: unset).
fn rerun_against_no_broker(test: &str, ci: Option<&str>) -> std::process::Output {
    let skips = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args([test, "--exact", "--test-threads=1"])
        .env(
            "HEALTHMON_TEST_RABBITMQ_URL",
            "amqp://guest:guest@127.0.0.1:1/%2f",
        )
        // The child's skip record goes here, not into this run's target/.
        .env("CARGO_TARGET_DIR", skips.path());
    match ci {
        Some(v) => cmd.env("CI", v),
        None => cmd.env_remove("CI"),
    };
    cmd.output().expect("the test binary runs")
}

#[test]
fn a_missing_broker_fails_the_test_under_ci_and_is_a_loud_skip_elsewhere() {
    let test = "events_reach_every_process_once";
    for ci in ["true", "1"] {
        let out = rerun_against_no_broker(test, Some(ci));
        // libtest prints a failed test's panic on stdout.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success(),
            "CI={ci}: the test passed without a broker"
        );
        assert!(stdout.contains("is required under CI"), "CI={ci}: {stdout}");
    }
    let out = rerun_against_no_broker(test, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "outside CI a missing broker is a skip: {stderr}"
    );
    // The summary, printed as the binary exits, names the skipped test.
    let result_at = stderr
        .find("1 TEST(S) SKIPPED, NOT PASSED")
        .expect("the skip summary is printed");
    assert!(stderr[result_at..].contains(test), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");
}

/// Regional votes (results with a region) all go to one recorder at a time,
/// so one process sees every vote of a round and judges every region; when
/// that recorder goes, another takes the votes it left unacknowledged and
/// the ones after them. Results without a region still go to any recorder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vote_goes_to_one_recorder_and_to_the_next_when_it_goes() {
    let Some(mut fx) = fixture().await else {
        return;
    };
    let one = fx.start_ready(options(&fx.url, &fx.prefix)).await;
    let two = fx.start_ready(options(&fx.url, &fx.prefix)).await;
    let vote = |id: i64, region: &str| CheckResult {
        region: Some(region.to_owned()),
        ..result(id)
    };
    let mut consumers = [
        one.consume_results().unwrap(),
        two.consume_results().unwrap(),
    ];
    // Both consumers start (a consumer starts when first polled) before
    // any vote is published.
    for c in consumers.iter_mut() {
        assert!(timeout(QUIET, c.next()).await.is_err());
    }
    for id in 1..=10 {
        for region in ["a", "b", "c"] {
            one.publish_result(vote(id, region)).await.unwrap();
        }
    }
    // Whichever recorder is active gets all 30; the other none.
    let (active, first) = {
        let [a, b] = &mut consumers;
        timeout(SOON, async {
            tokio::select! {
                d = a.next() => (0, d.unwrap()),
                d = b.next() => (1, d.unwrap()),
            }
        })
        .await
        .expect("no vote reached a recorder")
    };
    let standby = 1 - active;
    // The first ten acknowledged as they come (the prefetch holds 16
    // unacknowledged messages, a vote each here), ten more held.
    first.ack().await.unwrap();
    for _ in 1..10 {
        let d = timeout(SOON, consumers[active].next()).await.unwrap();
        d.unwrap().ack().await.unwrap();
    }
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(
            timeout(SOON, consumers[active].next())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(
        timeout(QUIET, consumers[standby].next()).await.is_err(),
        "the standby recorder got a vote"
    );
    // The active recorder goes with ten unacknowledged and ten not sent.
    drop(held);
    let [a, b] = consumers;
    let mut next = if active == 0 {
        drop(a);
        b
    } else {
        drop(b);
        a
    };
    one.publish_result(vote(11, "a")).await.unwrap();
    let mut taken = Vec::new();
    while taken.len() < 21 {
        let d = timeout(SOON, next.next()).await.unwrap().unwrap();
        taken.push(d.msg.service_id.get());
        d.ack().await.unwrap();
    }
    assert!(
        timeout(QUIET, next.next()).await.is_err(),
        "a vote came twice"
    );
    taken.sort_unstable();
    taken.dedup();
    assert_eq!(taken, (4..=11).collect::<Vec<i64>>());
}
