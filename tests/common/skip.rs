//! Skipping a test whose server (PostgreSQL, RabbitMQ, a local cluster) is
//! missing, so that a skip can never pass for a pass.
//!
//! Under CI (any non-empty `CI` variable) a missing server fails the test.
//! Elsewhere the skip is written straight to the terminal (libtest captures
//! only the `print!` macros, so a passing test's `eprintln!` was never seen),
//! counted, and summed up once more after the binary's own result line. Each
//! skip is also appended to `target/skipped-tests.txt`, which `.ci/run` reads
//! at the end of a run.

use std::io::Write;
use std::sync::Mutex;
use std::sync::Once;

/// True when the tests run under CI: `CI` set to anything but empty.
/// CI providers set `CI=true`, some `CI=1`; both count.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static SUMMARY: Once = Once::new();

/// Gives up on the current test because `what` is unavailable (`why`).
///
/// Under CI it panics, failing the test. Elsewhere it prints a banner that
/// the test runner cannot hide and records the skip; the caller returns
/// without asserting anything.
#[track_caller]
pub fn skip(what: &str, why: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    assert!(
        !in_ci(),
        "{test}: {what} is required under CI, and it is unavailable: {why}"
    );
    let line = format!("{test}: {what} unavailable ({why})");
    let _ = writeln!(std::io::stderr().lock(), "\n!!! SKIPPED {line} !!!");
    if let Ok(mut all) = SKIPPED.lock() {
        all.push(line.clone());
    }
    record(&line);
    SUMMARY.call_once(|| {
        // SAFETY: `summary` is an `extern "C" fn()` that takes nothing and
        // only writes to stderr; registering it has no other precondition.
        unsafe {
            libc_atexit(summary);
        }
    });
}

/// Appends the skip to `target/skipped-tests.txt` for `.ci/run`'s summary.
fn record(line: &str) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("skipped-tests.txt"))
    {
        let _ = writeln!(f, "{line}");
    }
}

unsafe extern "C" {
    #[link_name = "atexit"]
    fn libc_atexit(f: extern "C" fn()) -> i32;
}

/// Runs at exit, after libtest printed "test result: ok": repeats every skip
/// of this binary under a banner, so the last thing on screen says it.
extern "C" fn summary() {
    let all = match SKIPPED.lock() {
        Ok(all) => all.clone(),
        Err(_) => return,
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "\n!!!!!!!! {} TEST(S) SKIPPED, NOT PASSED (set CI=true to make them fail) !!!!!!!!",
        all.len()
    );
    for line in &all {
        let _ = writeln!(err, "!!! {line}");
    }
}
