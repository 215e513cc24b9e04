//! The `dns://[resolver[:port]]/name?type=A` check: one query through
//! hickory, then the `expect` strings looked for among the answer's records.
//!
//! No answer is kept between checks: each check builds its own small
//! resolver (no I/O until the query; its background tasks end with it), so
//! every check asks the server. Only the system's name servers
//! (`/etc/resolv.conf`, for a URL without a resolver) are remembered, and
//! read again every [`SYSTEM_CONF_TTL`].
//!
//! A resolver named in the URL is a target like any other: a literal
//! address is judged by the policy, a name is resolved first and its
//! blocked addresses are left out. The system's own name servers are the
//! operator's configuration, not a user's target, and are not judged (a
//! local stub such as 127.0.0.53 would otherwise fail every check under
//! `block_private`).

use crate::domain::CheckJob;
use crate::worker::check::Outcome;
use crate::worker::guard::AddressPolicy;
use crate::worker::net::{elapsed_ms, resolve, url_host};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, system_conf};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the system's name servers, once read, are used before
/// `/etc/resolv.conf` is read again (so an edited file is picked up without
/// reading it on every check).
pub(crate) const SYSTEM_CONF_TTL: Duration = Duration::from_secs(30);

/// The port a resolver is asked on when the URL gives none.
const DNS_PORT: u16 = 53;

/// At most this many of the answer's records are quoted in an error, each
/// cut at [`QUOTE_CHARS`] characters.
const QUOTE_RECORDS: usize = 10;
/// See [`QUOTE_RECORDS`].
const QUOTE_CHARS: usize = 100;

/// The record types a check may ask for (DESIGN.md "Check kinds").
pub const SUPPORTED_TYPES: [&str; 6] = ["A", "AAAA", "CNAME", "MX", "TXT", "NS"];

/// Runs `dns://` checks; clones share the remembered system name servers.
#[derive(Clone, Default)]
pub(crate) struct DnsCheck {
    system: Arc<Mutex<Option<SystemServers>>>,
}

/// The system's name servers and when they were read.
struct SystemServers {
    read_at: Instant,
    servers: Arc<[NameServerConfig]>,
}

/// What a `dns://` URL asks.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    /// The resolver's host (an IPv6 literal without brackets) and port;
    /// `None`: the system's.
    resolver: Option<(String, u16)>,
    /// The name asked about, as written (without a trailing dot).
    name: String,
    /// The record type.
    record_type: RecordType,
}

impl DnsCheck {
    /// A checker that has not read the system configuration yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Asks the job's question; UP when the answer has records of the type
    /// and every `expect` string among them, else DOWN with why.
    pub(crate) async fn check(
        &self,
        policy: &AddressPolicy,
        job: &CheckJob,
        start: Instant,
    ) -> Outcome {
        let down = |error: String| Outcome::down(elapsed_ms(start), error);
        let query = match parse(&job.url) {
            Ok(q) => q,
            Err(e) => return down(e),
        };
        let servers = match &query.resolver {
            None => match self.system_servers() {
                Ok(s) => s,
                Err(e) => return down(e),
            },
            Some((host, port)) => match resolve(policy, host, *port).await {
                Ok(addrs) => addrs
                    .iter()
                    .map(|a| name_server(a.ip(), a.port()))
                    .collect(),
                Err(e) => return down(e.to_string()),
            },
        };
        let timeout = Duration::from_millis(job.timeout_ms.max(1) as u64);
        let records = match ask(&servers, &query, timeout).await {
            Ok(records) => records,
            Err(e) => return down(e),
        };
        match missing(
            &records,
            job.check.expect.as_deref().unwrap_or_default(),
            query.record_type,
        ) {
            None => Outcome::up(elapsed_ms(start)),
            Some(expected) => down(format!(
                "dns: expected {expected:?} not in the answer {}",
                quote(&records)
            )),
        }
    }

    /// The system's name servers, read from `/etc/resolv.conf` when not
    /// read within [`SYSTEM_CONF_TTL`].
    fn system_servers(&self) -> Result<Arc<[NameServerConfig]>, String> {
        // A poisoned lock only means a panic elsewhere mid-update; the
        // value is replaced whole, so it is still consistent.
        let mut cached = self.system.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cached.as_ref()
            && c.read_at.elapsed() < SYSTEM_CONF_TTL
        {
            return Ok(Arc::clone(&c.servers));
        }
        let (config, _) = system_conf::read_system_conf()
            .map_err(|e| format!("dns: cannot read the system resolver configuration: {e}"))?;
        let servers: Arc<[NameServerConfig]> = config.name_servers().into();
        if servers.is_empty() {
            return Err("dns: the system resolver configuration names no name server".into());
        }
        *cached = Some(SystemServers {
            read_at: Instant::now(),
            servers: Arc::clone(&servers),
        });
        Ok(servers)
    }
}

/// A name server at `ip:port`, asked over UDP, and over TCP for an answer
/// too long for UDP.
fn name_server(ip: IpAddr, port: u16) -> NameServerConfig {
    let mut server = NameServerConfig::udp_and_tcp(ip);
    for connection in &mut server.connections {
        connection.port = port;
    }
    server
}

/// Reads a `dns://[resolver[:port]]/name?type=T` URL.
fn parse(url: &str) -> Result<Query, String> {
    let bad = || "dns: the URL is not dns://[resolver[:port]]/name?type=TYPE".to_owned();
    let parsed = url::Url::parse(url).map_err(|_| bad())?;
    let resolver = url_host(&parsed).map(|host| (host, parsed.port().unwrap_or(DNS_PORT)));
    let name = parsed.path().trim_start_matches('/');
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.contains(['/', '%']) {
        return Err(bad());
    }
    let record_type = match parsed
        .query_pairs()
        .find(|(k, _)| k.eq_ignore_ascii_case("type"))
    {
        None => RecordType::A,
        Some((_, t)) => record_type(&t).ok_or_else(|| {
            format!(
                "dns: record type {t:?} is not supported (one of {})",
                SUPPORTED_TYPES.join(", ")
            )
        })?,
    };
    Ok(Query {
        resolver,
        name: name.to_owned(),
        record_type,
    })
}

/// The record type named `t` (any case), if supported.
fn record_type(t: &str) -> Option<RecordType> {
    Some(match t.to_ascii_uppercase().as_str() {
        "A" => RecordType::A,
        "AAAA" => RecordType::AAAA,
        "CNAME" => RecordType::CNAME,
        "MX" => RecordType::MX,
        "TXT" => RecordType::TXT,
        "NS" => RecordType::NS,
        _ => return None,
    })
}

/// Asks `servers` the query with a resolver of its own (nothing cached
/// from another check); the answer's records of the asked type, as text.
async fn ask(
    servers: &[NameServerConfig],
    query: &Query,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    // Relaxed: underscores (`_dmarc.example.com`) are common in TXT names.
    let mut name = Name::from_str_relaxed(&query.name)
        .map_err(|e| format!("dns: {:?} is not a domain name: {e}", query.name))?;
    // Asked as written: no search domains appended.
    name.set_fqdn(true);
    let mut opts = ResolverOpts::default();
    // The job's timeout bounds the check from outside (see net.rs), so a
    // late answer reads the same whatever part was slow; the resolver's own
    // limit only backs it up.
    opts.timeout = timeout + Duration::from_secs(1);
    opts.attempts = 1;
    // The resolver lives for one query: a cache would never be read.
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    let config = ResolverConfig::from_parts(None, Vec::new(), servers.to_vec());
    let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| format!("dns: cannot make a resolver: {e}"))?;
    let rtype = query.record_type;
    let lookup = resolver
        .lookup(name, rtype)
        .await
        .map_err(|e| describe(&e, &query.name, rtype))?;
    let records: Vec<String> = lookup
        .answers()
        .iter()
        .filter(|r| r.record_type() == rtype)
        .filter_map(|r| render(&r.data))
        .collect();
    if records.is_empty() {
        return Err(format!("dns: no {rtype} records for {}", query.name));
    }
    Ok(records)
}

/// A failed lookup in words, reason code first.
fn describe(e: &NetError, name: &str, rtype: RecordType) -> String {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(none))
            if none.response_code == ResponseCode::NXDomain =>
        {
            format!("dns: {name} does not exist (NXDOMAIN)")
        }
        NetError::Dns(DnsError::NoRecordsFound(_)) => format!("dns: no {rtype} records for {name}"),
        NetError::Dns(DnsError::ResponseCode(code)) => {
            format!("dns: the resolver answered {} ({code})", code_name(*code))
        }
        NetError::Timeout => "timeout: no DNS answer".to_owned(),
        other => format!("dns: {other}"),
    }
}

/// The mnemonic of a response code, as `dig` shows it.
fn code_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        other => u16::from(other).to_string(),
    }
}

/// A record as text, as `expect` strings are written: an address, a name
/// without its trailing dot, `10 mail.example.com` for MX, a TXT record's
/// strings joined.
fn render(data: &RData) -> Option<String> {
    Some(match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(c) => name_text(&c.0),
        RData::NS(ns) => name_text(&ns.0),
        RData::MX(mx) => format!("{} {}", mx.preference, name_text(&mx.exchange)),
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect(),
        _ => return None,
    })
}

/// A name without the root's trailing dot.
fn name_text(name: &Name) -> String {
    let text = name.to_utf8();
    match text.strip_suffix('.') {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => text,
    }
}

/// The first `expect` string not among `records`, if any. Addresses are
/// compared as addresses (`::1` is `0::1`), names without case or a
/// trailing dot, TXT exactly.
fn missing<'a>(records: &[String], expect: &'a [String], rtype: RecordType) -> Option<&'a str> {
    expect
        .iter()
        .find(|want| !records.iter().any(|got| matches(got, want, rtype)))
        .map(String::as_str)
}

/// Whether the record `got` is the expected `want`.
fn matches(got: &str, want: &str, rtype: RecordType) -> bool {
    match rtype {
        RecordType::A | RecordType::AAAA => {
            match (got.parse::<IpAddr>(), want.trim().parse::<IpAddr>()) {
                (Ok(g), Ok(w)) => g == w,
                _ => got == want,
            }
        }
        RecordType::TXT => got == want,
        _ => {
            let want = want.trim();
            let want = want.strip_suffix('.').unwrap_or(want);
            got.eq_ignore_ascii_case(want)
        }
    }
}

/// The records as `[a, b, ...]`, bounded: at most [`QUOTE_RECORDS`] of
/// them, each cut at [`QUOTE_CHARS`] characters.
fn quote(records: &[String]) -> String {
    let mut shown: Vec<String> = records
        .iter()
        .take(QUOTE_RECORDS)
        .map(|r| match r.char_indices().nth(QUOTE_CHARS) {
            Some((cut, _)) => format!("{}…", &r[..cut]),
            None => r.clone(),
        })
        .collect();
    if records.len() > QUOTE_RECORDS {
        shown.push(format!("… {} more", records.len() - QUOTE_RECORDS));
    }
    format!("[{}]", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_resolver_the_name_and_the_type() {
        let q = parse("dns:///example.com?type=mx").unwrap();
        assert_eq!(q.resolver, None);
        assert_eq!(q.name, "example.com");
        assert_eq!(q.record_type, RecordType::MX);
        let q = parse("dns://127.0.0.1:5353/www.example.com.").unwrap();
        assert_eq!(q.resolver, Some(("127.0.0.1".into(), 5353)));
        assert_eq!(q.name, "www.example.com");
        assert_eq!(q.record_type, RecordType::A);
        let q = parse("dns://[::1]/x.test?type=AAAA").unwrap();
        assert_eq!(q.resolver, Some(("::1".into(), 53)));
        let q = parse("dns://NS1.Example.net/x.test?TYPE=TXT").unwrap();
        assert_eq!(q.resolver, Some(("ns1.example.net".into(), 53)));
        assert_eq!(q.record_type, RecordType::TXT);
        // Read as an HTTP URL's host is: this is 127.0.0.1.
        let q = parse("dns://2130706433:5353/x.test").unwrap();
        assert_eq!(q.resolver, Some(("127.0.0.1".into(), 5353)));
        assert!(parse("dns://127.0.0.1/").unwrap_err().starts_with("dns: "));
        let err = parse("dns:///x.test?type=SRV").unwrap_err();
        assert!(
            err.starts_with("dns: record type \"SRV\" is not supported"),
            "{err}"
        );
    }

    #[test]
    fn expected_strings_are_compared_as_their_type_reads() {
        let a = vec!["10.0.0.1".to_owned(), "::1".to_owned()];
        assert_eq!(
            missing(&a, &["0::1".into(), "10.0.0.1".into()], RecordType::AAAA),
            None
        );
        assert_eq!(
            missing(&a, &["10.0.0.2".into()], RecordType::A),
            Some("10.0.0.2")
        );
        let mx = vec!["10 mail.example.com".to_owned()];
        assert_eq!(
            missing(&mx, &["10 Mail.Example.com.".into()], RecordType::MX),
            None
        );
        let txt = vec!["v=spf1 -all".to_owned()];
        assert_eq!(
            missing(&txt, &["V=spf1 -all".into()], RecordType::TXT),
            Some("V=spf1 -all")
        );
        assert_eq!(missing(&txt, &[], RecordType::TXT), None);
    }

    #[test]
    fn a_quoted_answer_is_bounded() {
        let many: Vec<String> = (0..25).map(|i| format!("10.0.0.{i}")).collect();
        let text = quote(&many);
        assert!(text.ends_with(", … 15 more]"), "{text}");
        let long = vec!["x".repeat(1000)];
        assert_eq!(quote(&long).chars().count(), QUOTE_CHARS + 3);
    }
}
