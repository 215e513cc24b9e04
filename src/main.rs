//! The `healthmon` binary: reads the CLI and the configuration, then runs
//! the chosen roles ([`healthmon::app`]) or a subcommand (`keys`, `config
//! show`, `healthcheck`, `completions`). Errors end it with one line on
//! stderr and exit code 1.

use clap::{CommandFactory, Parser};
use healthmon::cli::{
    Cli, Command, ConfigAction, Remote, Roles, apply, export, healthcheck, report,
};
use healthmon::store::pg_connect;
use healthmon::{app, config, keys};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

// Checks allocate and free small buffers from many threads; glibc's malloc
// showed in CPU profiles for it and kept freed memory in per-thread arenas
// (BENCHMARKS.md, "What changed").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    limit_c_heap_arenas();
    purge_freed_memory_at_once();
    sqlite_multi_thread();
    let cli = Cli::parse();
    healthmon::logging::init();
    let detail = report::wants_detail(cli.debug, std::env::var("RUST_LOG").ok().as_deref());
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // Printed here rather than returned: anyhow's Debug form repeats
            // the causes and carries a backtrace under RUST_BACKTRACE=1.
            let mut stderr = std::io::stderr();
            let _ = if detail {
                writeln!(stderr, "error: {e:?}")
            } else {
                writeln!(
                    stderr,
                    "error: {}",
                    report::one_line(e.chain().map(|c| c.to_string()))
                )
            };
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Command::Completions { shell }) = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "healthmon",
            &mut std::io::stdout(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(Command::Healthcheck {
        url: Some(url),
        timeout,
    }) = &cli.command
    {
        // An explicit URL needs no configuration (which may not be there).
        let url = healthcheck::readyz_url_for(url).map_err(anyhow::Error::msg)?;
        return Ok(probe(&url, *timeout).await);
    }
    if let Some(Command::Apply { remote, .. } | Command::Export { remote }) = &cli.command {
        let api = remote_api(remote, &cli)?;
        return Ok(match cli.command {
            Some(Command::Apply {
                file,
                prune,
                dry_run,
                send_secrets,
                ..
            }) => {
                let options = apply::Options {
                    file,
                    prune,
                    dry_run,
                    send_secrets,
                };
                apply::run(&options, &api).await
            }
            _ => {
                let yaml = export::export(&api).await?;
                std::io::stdout().write_all(yaml.as_bytes())?;
                ExitCode::SUCCESS
            }
        });
    }
    let inputs = config::Inputs::from_process(cli.config.as_deref(), cli.flags())
        .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
    let resolved =
        config::resolve(&inputs).map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
    match cli.command {
        Some(Command::Config {
            action: ConfigAction::Show,
        }) => {
            let mut stderr = std::io::stderr();
            for warning in resolved.warnings() {
                let _ = writeln!(stderr, "warning: {warning}");
            }
            // Shown even when a value is invalid: the error follows it.
            let _ = std::io::stdout().write_all(resolved.render().as_bytes());
            resolved
                .settings()
                .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Command::Healthcheck { timeout, .. }) => {
            let settings = resolved
                .settings()
                .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
            let url = healthcheck::readyz_url_for_bind(settings.server.bind);
            return Ok(probe(&url, timeout).await);
        }
        _ => {}
    }
    for warning in resolved.warnings() {
        tracing::warn!("{warning}");
    }
    let mut settings = resolved
        .settings()
        .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
    if settings.queue.url.is_some() {
        settings.queue.url_source = resolved.source("queue.url").map(ToString::to_string);
    }
    let database = settings.database.url.clone();
    let result = match cli.command {
        Some(Command::Keys { action }) => keys::run(
            action,
            &settings,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )
        .await
        .map_err(anyhow::Error::from),
        _ => run_monitor(settings, &cli.role, cli.health_bind).await,
    };
    result
        .map(|()| ExitCode::SUCCESS)
        .map_err(|e| match resolved.source("database.url") {
            Some(source) => name_database_source(e, &database, source),
            None => e,
        })
}

async fn run_monitor(
    settings: config::Settings,
    roles: &[healthmon::cli::Role],
    health_bind: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let app = app::App::build(settings, Roles::from_list(roles), health_bind).await?;
    app.run(app::shutdown_signal()).await?;
    Ok(())
}

/// The API `apply` and `export` use: `--url`, or the configured
/// server.bind (an explicit URL needs no configuration).
fn remote_api(remote: &Remote, cli: &Cli) -> anyhow::Result<apply::client::Api> {
    let base = match &remote.url {
        Some(url) => apply::client::base_url(url)?,
        None => {
            let inputs = config::Inputs::from_process(cli.config.as_deref(), cli.flags())
                .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
            let settings = config::resolve(&inputs)
                .and_then(|r| r.settings())
                .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
            let readyz = healthcheck::readyz_url_for_bind(settings.server.bind);
            apply::client::base_url(readyz.trim_end_matches("readyz"))?
        }
    };
    Ok(apply::client::Api::new(base, remote.token.clone())?)
}

/// `healthmon healthcheck`: 0 when ready, 1 with one line on stderr.
async fn probe(url: &str, timeout_s: u64) -> ExitCode {
    match healthcheck::probe(url, Duration::from_secs(timeout_s)).await {
        Ok(()) => {
            let _ = writeln!(std::io::stdout(), "ready: {url}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            let _ = writeln!(std::io::stderr(), "not ready: {why}");
            ExitCode::FAILURE
        }
    }
}

/// A database error names the setting's source: inside the PostgreSQL
/// description (`PostgreSQL at HOST:PORT (database NAME, from .env's
/// DB_HOST/DB_PORT)`), or after an SQLite open error. Other errors pass
/// unchanged. (The store's errors are wrapped transparently by the app's
/// and the keys' errors, so they are recognised by their text.)
fn name_database_source(
    e: anyhow::Error,
    url: &config::DatabaseUrl,
    source: &config::Source,
) -> anyhow::Error {
    let line = report::one_line(e.chain().map(|c| c.to_string()));
    let named = match url {
        config::DatabaseUrl::Postgres(url) => {
            let plain = pg_connect::describe(url, None);
            line.contains(&plain).then(|| {
                line.replacen(
                    &plain,
                    &pg_connect::describe(url, Some(&source.to_string())),
                    1,
                )
            })
        }
        config::DatabaseUrl::Sqlite(_) => line
            .starts_with("cannot open the database")
            .then(|| format!("{line} (database.url from {source})")),
    };
    named.map_or(e, anyhow::Error::msg)
}

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (libmimalloc-sys
/// 0.1.49 names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Lets mimalloc give freed pages back to the OS at once instead of after
/// its default 10 ms. A burst (registering 100,000 services, a reload)
/// otherwise left its peak in the RSS: 177.7 MB against 140.9 MB at
/// 100,000 services with assertions, for 2 % more CPU per check
/// (BENCHMARKS.md "Check kinds"). `MIMALLOC_PURGE_DELAY` in the environment
/// still decides when it is set.
fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores an option value; purge_delay is
        // read each time memory is freed, so setting it at any time is sound.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

/// SQLite in multi-thread mode, keeping no memory statistics. Each
/// connection is used by one thread at a time (diesel's connections are
/// `Send`, not `Sync`, and the pool lends each to one task), so the
/// connection mutex that the default serialized mode takes on every call
/// guards nothing; and nothing reads SQLite's memory counters, whose upkeep
/// takes a global mutex on every allocation. The two were 4.4 % of the CPU at
/// 100,000 services (BENCHMARKS.md "The price of a check").
fn sqlite_multi_thread() {
    // SAFETY: sqlite3_config is only valid before SQLite initialises (later
    // it returns SQLITE_MISUSE and changes nothing); this runs first in
    // main, before any connection is opened. Each variadic argument is the
    // C int its option takes.
    unsafe {
        libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD);
        libsqlite3_sys::sqlite3_config(
            libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
            std::ffi::c_int::from(0_u8),
        );
    }
}

/// SQLite (C) still allocates through glibc, which gives each thread that
/// contends for the heap an arena of its own and keeps freed pages in each.
/// SQLite runs on tokio's blocking threads, so eight arenas held a large
/// share of the RSS at scale (BENCHMARKS.md); two hold what one writer and
/// the readers need.
fn limit_c_heap_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a malloc tunable; it is called once, before
    // this process starts any thread that uses SQLite.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
