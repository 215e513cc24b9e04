//! The `healthmon` binary: reads the CLI and the configuration, then runs
//! the chosen roles ([`healthmon::app`]) or a `keys` subcommand.

use clap::Parser;
use healthmon::cli::{Cli, Command, Roles};
use healthmon::{app, config, keys};

// Checks allocate and free small buffers from many threads; glibc's malloc
// showed in CPU profiles for it and kept freed memory in per-thread arenas
// (BENCHMARKS.md, "What changed").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    limit_c_heap_arenas();
    let cli = Cli::parse();
    healthmon::logging::init();
    let settings = config::load(cli.config.as_deref())
        .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?;
    if let Some(Command::Keys { action }) = cli.command {
        keys::run(
            action,
            &settings,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )
        .await?;
        return Ok(());
    }
    let app = app::App::build(settings, Roles::from_list(&cli.role), cli.health_bind).await?;
    app.run(app::shutdown_signal()).await?;
    Ok(())
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
