//! Command-line arguments, and the commands that are not the monitor
//! itself (`healthcheck`, `completions`) with the error report of `main`.

pub mod apply;
pub mod export;
pub mod healthcheck;
pub mod report;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// healthmon: a self-hosted, real-time service health monitor.
#[derive(Debug, Parser)]
#[command(name = "healthmon", version, about)]
pub struct Cli {
    /// A TOML file whose settings override the built-in defaults.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Address of the REST API and WebSocket (server.bind); wins over the
    /// files and the environment.
    #[arg(long, value_name = "ADDR", global = true)]
    pub bind: Option<std::net::SocketAddr>,
    /// sqlite://PATH or postgres://USER:PASS@HOST:PORT/DB (database.url);
    /// wins over the files and the environment.
    #[arg(long, value_name = "URL", global = true)]
    pub database_url: Option<String>,
    /// On an error, print it in full (with a backtrace where
    /// RUST_BACKTRACE=1 captured one) instead of one line.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Which parts this process runs, as a comma list.
    #[arg(
        long,
        value_name = "ROLES",
        value_delimiter = ',',
        default_value = "all"
    )]
    pub role: Vec<Role>,
    /// The region this process's workers check from (worker.region, 1-32
    /// characters of a-z, 0-9 and -); wins over the files and the
    /// environment.
    #[arg(long, value_name = "NAME", global = true)]
    pub region: Option<String>,
    /// Serve /healthz and /readyz on this address in a process without the
    /// api role (a worker-only process has no other HTTP port).
    #[arg(long, value_name = "ADDR")]
    pub health_bind: Option<std::net::SocketAddr>,
    /// Run an administrative command instead of the monitor.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Administrative commands; they use the same configuration as the server.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage API keys.
    Keys {
        /// What to do.
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Inspect the configuration.
    Config {
        /// What to do.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Probe a running monitor's /readyz: exit code 0 when it is ready, 1
    /// otherwise with one line on stderr saying why (for container
    /// health checks).
    Healthcheck {
        /// The monitor's URL (http://HOST:PORT, or the full /readyz URL);
        /// by default the configured server.bind.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, value_name = "SECONDS", default_value_t = 3,
              value_parser = clap::value_parser!(u64).range(1..=60))]
        timeout: u64,
    },
    /// Make a running monitor's services, alert channels and maintenance
    /// windows what a YAML file says: create what is missing, update what
    /// differs, leave the rest (docs/config-as-code.md).
    Apply {
        /// The YAML file (examples/monitors.yaml is one to start from).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Also delete what the file does not list.
        #[arg(long)]
        prune: bool,
        /// Print the changes without making them.
        #[arg(long)]
        dry_run: bool,
        /// Also update the objects whose secrets the file gives, though
        /// nothing else differs (the monitor never shows secrets, so a
        /// changed one is not seen otherwise).
        #[arg(long)]
        send_secrets: bool,
        /// Where the monitor is.
        #[command(flatten)]
        remote: Remote,
    },
    /// Print a running monitor's services, alert channels and maintenance
    /// windows as the YAML `apply` reads (secrets as ***).
    Export {
        /// Where the monitor is.
        #[command(flatten)]
        remote: Remote,
    },
    /// Print a shell completion script, e.g.
    /// `healthmon completions bash > /etc/bash_completion.d/healthmon`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The monitor `apply` and `export` talk to.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// The monitor's URL (http://HOST:PORT); by default the configured
    /// server.bind.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// An API key's token (apply needs a write key once keys exist).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "HEALTHMON_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// `healthmon config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration: every key, its value and where
    /// it came from (default, --config file, .env, environment, flag);
    /// passwords as ***.
    Show,
}

/// `healthmon keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Create a key and print its token (shown this once only).
    Create {
        /// A unique name for the key.
        #[arg(long)]
        name: String,
        /// What the key may do.
        #[arg(long, value_enum)]
        scope: KeyScope,
    },
    /// List keys: name, scope, creation and last use.
    List,
    /// Revoke a key by name; requests with it fail from then on.
    Revoke {
        /// The key's name.
        name: String,
    },
}

/// A key's scope on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyScope {
    /// Reads only.
    Read,
    /// Reads and changes.
    Write,
}

/// A part of the monitor a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Everything in one process.
    All,
    /// REST API and WebSocket.
    Api,
    /// Publishes due checks.
    Scheduler,
    /// Runs checks.
    Worker,
}

/// The resolved set of roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Serve HTTP.
    pub api: bool,
    /// Schedule checks.
    pub scheduler: bool,
    /// Run checks.
    pub worker: bool,
}

impl Cli {
    /// The settings given as flags.
    pub fn flags(&self) -> crate::config::Flags {
        crate::config::Flags {
            bind: self.bind.map(|a| a.to_string()),
            database_url: self.database_url.clone(),
            region: self.region.clone(),
        }
    }
}

impl Roles {
    /// Resolves a list as given on the command line.
    pub fn from_list(list: &[Role]) -> Self {
        if list.is_empty() || list.contains(&Role::All) {
            return Self::all();
        }
        Self {
            api: list.contains(&Role::Api),
            scheduler: list.contains(&Role::Scheduler),
            worker: list.contains(&Role::Worker),
        }
    }

    /// Every role.
    pub fn all() -> Self {
        Self {
            api: true,
            scheduler: true,
            worker: true,
        }
    }

    /// Whether this is the single-process monitor.
    pub fn is_all(&self) -> bool {
        *self == Self::all()
    }

    /// The recorder runs wherever the API or the scheduler does.
    pub fn recorder(&self) -> bool {
        self.api || self.scheduler
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_lists_resolve() {
        let cli = Cli::try_parse_from(["healthmon", "--role", "api,scheduler"]).unwrap();
        let roles = Roles::from_list(&cli.role);
        assert!(roles.api && roles.scheduler && !roles.worker && roles.recorder());
        let cli = Cli::try_parse_from(["healthmon"]).unwrap();
        assert!(Roles::from_list(&cli.role).is_all());
        let worker = Roles::from_list(&[Role::Worker]);
        assert!(!worker.recorder());
        assert!(Cli::try_parse_from(["healthmon", "--role", "cook"]).is_err());
    }

    #[test]
    fn keys_subcommands_parse() {
        let cli = Cli::try_parse_from([
            "healthmon",
            "keys",
            "create",
            "--name",
            "ci",
            "--scope",
            "read",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Keys { action: KeysAction::Create { ref name, scope: KeyScope::Read } }) if name == "ci"
        ));
        assert!(
            Cli::try_parse_from([
                "healthmon",
                "keys",
                "create",
                "--name",
                "x",
                "--scope",
                "admin"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["healthmon", "keys", "revoke", "ci"]).is_ok());
    }
}
