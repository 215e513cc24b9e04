//! The `healthmon keys` commands: create, list and revoke API keys in the
//! store the server uses.

use crate::auth::{self, AuthError, Scope};
use crate::cli::{KeyScope, KeysAction};
use crate::config::Settings;
use crate::domain::time::to_rfc3339;
use crate::store::Store;
use std::io::Write;

/// Why a keys command failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A key operation failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Output could not be written.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs a keys command. Results go to `out` (the token, the list); notes for
/// the person at the terminal go to `note`.
pub async fn run(
    action: KeysAction,
    settings: &Settings,
    out: &mut dyn Write,
    note: &mut dyn Write,
) -> Result<(), KeysError> {
    let store = Store::open(&settings.database.url, 1).await?;
    match action {
        KeysAction::Create { name, scope } => {
            let scope = match scope {
                KeyScope::Read => Scope::Read,
                KeyScope::Write => Scope::Write,
            };
            let token = auth::create_key(&store, &name, scope).await?;
            writeln!(out, "{token}")?;
            writeln!(
                note,
                "created key {name:?} ({}). The token above is shown only now; store it safely.",
                scope.as_str()
            )?;
        }
        KeysAction::List => {
            let keys = store.list_keys().await?;
            writeln!(
                out,
                "{:<24} {:<6} {:<25} LAST USED",
                "NAME", "SCOPE", "CREATED"
            )?;
            for k in keys {
                let used = k
                    .last_used_at
                    .map_or_else(|| "never".to_owned(), to_rfc3339);
                writeln!(
                    out,
                    "{:<24} {:<6} {:<25} {used}",
                    k.name,
                    k.scope,
                    to_rfc3339(k.created_at)
                )?;
            }
        }
        KeysAction::Revoke { name } => {
            if !store.revoke_key(&name).await? {
                return Err(AuthError::NoSuchKey(name).into());
            }
            writeln!(note, "revoked key {name:?}")?;
        }
    }
    Ok(())
}
