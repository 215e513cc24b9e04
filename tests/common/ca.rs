//! A certificate authority made by a test, and the server certificates it
//! issues: for HTTPS targets ([`super::target::Target::start_tls`]), SMTP
//! servers and `tls://` targets.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A certificate authority made by a test: give its certificate to a
/// process as a trust root ([`TestCa::write_pem`]) and start targets whose
/// certificates it issued ([`Target::start_tls`]).
pub struct TestCa {
    /// The CA certificate, PEM.
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new CA (a fresh key) named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate to `dir/NAME.pem`; returns the path.
    pub fn write_pem(&self, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, &self.pem).expect("write CA certificate");
        path
    }

    /// A new server certificate for `localhost` and `127.0.0.1` issued by
    /// this CA, with its key (valid from 1975 to 4096, rcgen's default).
    pub fn server_cert(&self) -> (rcgen::Certificate, rcgen::KeyPair) {
        self.issue(&["localhost", "127.0.0.1"], None)
    }

    /// A new server certificate for `names` (DNS names or IP addresses; the
    /// first is also the common name) valid from `not_before` to
    /// `not_after`, issued by this CA, with its key: certificates that
    /// expire soon, have expired, or are for another host ([`days_from_now`]
    /// makes the times).
    pub fn server_cert_with(
        &self,
        names: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> (rcgen::Certificate, rcgen::KeyPair) {
        self.issue(names, Some((not_before, not_after)))
    }

    /// A server configuration with a new certificate for `localhost` and
    /// `127.0.0.1`, issued by this CA (ring, as the binary uses).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        config_for(self.server_cert())
    }

    /// A server configuration with a new certificate for `names`, valid
    /// from `not_before` to `not_after` (see [`TestCa::server_cert_with`]).
    ///
    /// ```ignore
    /// // expires in 3 days
    /// ca.server_config_with(&["localhost"], days_from_now(-1), days_from_now(3));
    /// // expired yesterday
    /// ca.server_config_with(&["localhost"], days_from_now(-30), days_from_now(-1));
    /// // for another host
    /// ca.server_config_with(&["other.example"], days_from_now(-1), days_from_now(90));
    /// ```
    pub fn server_config_with(
        &self,
        names: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Arc<rustls::ServerConfig> {
        config_for(self.server_cert_with(names, not_before, not_after))
    }

    fn issue(
        &self,
        names: &[&str],
        validity: Option<(SystemTime, SystemTime)>,
    ) -> (rcgen::Certificate, rcgen::KeyPair) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).expect("server params");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            names.first().map_or("localhost", String::as_str),
        );
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        if let Some((not_before, not_after)) = validity {
            params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before);
            params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after);
        }
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        (cert, key)
    }
}

/// Now plus `days` (negative: in the past), for certificate validity.
pub fn days_from_now(days: i64) -> SystemTime {
    let span = Duration::from_secs(days.unsigned_abs() * 86_400);
    if days < 0 {
        SystemTime::now() - span
    } else {
        SystemTime::now() + span
    }
}

/// How long after the Unix epoch `at` is: rcgen's validity fields take the
/// `time` crate's date-time, which the tests do not depend on, so they are
/// set as the epoch (`rcgen::date_time_ymd`) plus this.
fn since_epoch(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .expect("a time after 1970")
}

/// A server configuration (ring, as the binary uses) serving `cert`.
fn config_for((cert, key): (rcgen::Certificate, rcgen::KeyPair)) -> Arc<rustls::ServerConfig> {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .expect("server config");
    Arc::new(config)
}
