//! Command-line arguments.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// healthmon: a self-hosted, real-time service health monitor.
#[derive(Debug, Parser)]
#[command(name = "healthmon", version, about)]
pub struct Cli {
    /// A TOML file whose settings override the built-in defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Which parts this process runs, as a comma list.
    #[arg(
        long,
        value_name = "ROLES",
        value_delimiter = ',',
        default_value = "all"
    )]
    pub role: Vec<Role>,
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
