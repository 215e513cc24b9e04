//! Trust for the TLS connections healthmon makes to its own servers
//! (PostgreSQL, RabbitMQ): the system's roots plus a PEM file of internal
//! CAs, on rustls's ring provider like the rest of the binary.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A CA file or the TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file cannot be read or holds no certificate.
    #[error("CA file {path}: {why}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider every TLS configuration here uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that verifies the server's chain against the
/// system's roots and the CAs in `ca_file`, and its host name.
pub fn verifying_client(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let (system, extra) = trust_roots(ca_file)?;
    let mut roots = rustls::RootCertStore::empty();
    // A system without a CA bundle still works with a CA file alone.
    for cert in system {
        let _ = roots.add(cert);
    }
    for cert in extra {
        roots.add(cert).map_err(|e| TlsError::CaFile {
            path: ca_file.map(Path::to_owned).unwrap_or_default(),
            why: e.to_string(),
        })?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The system's roots and, apart, the certificates in `ca_file` (for a
/// client that builds its trust store itself, such as SMTP's).
pub fn trust_roots(
    ca_file: Option<&Path>,
) -> Result<(Vec<CertificateDer<'static>>, Vec<CertificateDer<'static>>), TlsError> {
    let system = rustls_native_certs::load_native_certs().certs;
    let Some(path) = ca_file else {
        return Ok((system, Vec::new()));
    };
    let bad = |why: String| TlsError::CaFile {
        path: path.to_owned(),
        why,
    };
    let extra: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect())
        .map_err(|e| bad(e.to_string()))?;
    if extra.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok((system, extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for path in [dir.path().join("missing.pem"), empty] {
            let err = verifying_client(Some(&path)).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains(&*path.to_string_lossy())),
                "{err:?}"
            );
        }
        assert!(verifying_client(None).is_ok());
    }
}
