//! Which addresses a check may connect to (DESIGN.md "Target safety").
//!
//! Link-local (where cloud metadata services live), "this network"
//! 0.0.0.0/8, the unspecified address, multicast and broadcast are always
//! blocked; with `checks.block_private` loopback, RFC 1918, unique-local and
//! CGNAT addresses are blocked too. `checks.allow_cidrs` lets listed ranges
//! through either way.
//!
//! An IPv6 address that carries an IPv4 address (IPv4-mapped
//! `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, IPv4-compatible
//! `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) is judged
//! as that IPv4 address, for blocking and for the allow-list alike, so
//! `::ffff:169.254.169.254` is as blocked as `169.254.169.254`.
//!
//! Everything here is pure; the checker applies it to every address it
//! would connect to (see `check.rs`).

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why an address is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// 169.254.0.0/16, fe80::/10 (cloud metadata services live here).
    LinkLocal,
    /// 0.0.0.0/8: "this network"; connecting to it reaches the local host.
    ThisNetwork,
    /// `::`.
    Unspecified,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 127.0.0.0/8, ::1 (only with `block_private`).
    Loopback,
    /// 10/8, 172.16/12, 192.168/16 (only with `block_private`).
    Private,
    /// fc00::/7 (only with `block_private`).
    UniqueLocal,
    /// 100.64.0.0/10, carrier-grade NAT (only with `block_private`).
    SharedAddressSpace,
}

impl Reason {
    /// Blocked whatever `block_private` says.
    pub fn always(self) -> bool {
        matches!(
            self,
            Self::LinkLocal
                | Self::ThisNetwork
                | Self::Unspecified
                | Self::Multicast
                | Self::Broadcast
        )
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::LinkLocal => "link-local",
            Self::ThisNetwork => "this-network 0.0.0.0/8",
            Self::Unspecified => "unspecified",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::UniqueLocal => "unique-local",
            Self::SharedAddressSpace => "shared address space (CGNAT)",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A check may not connect to this address. Its text is what the user sees
/// as the check's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The address as it was given or resolved.
    pub addr: IpAddr,
    /// Why.
    pub reason: Reason,
    /// The name that resolved to it, if it was not a literal address.
    pub host: Option<String>,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocked address {}", self.addr)?;
        if let Some(host) = &self.host {
            write!(f, " for {host}")?;
        }
        write!(f, " ({}", self.reason)?;
        let judged = canonical(self.addr);
        if judged != self.addr {
            write!(f, " as {judged}")?;
        }
        if !self.reason.always() {
            f.write_str(", checks.block_private is on")?;
        }
        f.write_str("; see checks.allow_cidrs)")
    }
}

impl std::error::Error for Blocked {}

/// The rules of `[checks]`: which addresses a check may connect to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    block_private: bool,
    allow: Vec<IpNet>,
}

impl AddressPolicy {
    /// A policy from `checks.block_private` and `checks.allow_cidrs`.
    pub fn new(block_private: bool, allow: &[IpNet]) -> Self {
        Self {
            block_private,
            allow: allow.iter().map(|n| canonical_net(*n)).collect(),
        }
    }

    /// Whether a check may connect to `addr`.
    pub fn check(&self, addr: IpAddr) -> Result<(), Blocked> {
        let judged = canonical(addr);
        let Some(reason) = classify(judged) else {
            return Ok(());
        };
        if !(reason.always() || self.block_private)
            || self.allow.iter().any(|n| n.contains(&judged))
        {
            return Ok(());
        }
        Err(Blocked {
            addr,
            reason,
            host: None,
        })
    }

    /// The addresses of `resolved` a check may connect to, in their order.
    /// With none left: the first blocked one (named as `host`'s, when the
    /// addresses came from resolving a name), or `None` when there were
    /// none to begin with.
    pub fn allowed(
        &self,
        resolved: impl IntoIterator<Item = SocketAddr>,
        host: Option<&str>,
    ) -> Result<Vec<SocketAddr>, Option<Blocked>> {
        let mut blocked = None;
        let allowed: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|addr| match self.check(addr.ip()) {
                Ok(()) => true,
                Err(b) => {
                    blocked.get_or_insert(b);
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            return Err(blocked.map(|mut b| {
                b.host = host.map(str::to_owned);
                b
            }));
        }
        Ok(allowed)
    }

    /// Checks a URL's host if it is a literal address (the HTTP client
    /// connects to those without resolving them); a name passes here and is
    /// checked when it is resolved.
    pub fn check_url(&self, url: &url::Url) -> Result<(), Blocked> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check(IpAddr::V6(v6)),
            Some(url::Host::Domain(_)) | None => Ok(()),
        }
    }
}

/// The IPv4 address an IPv6 address carries, in the forms that reach (or are
/// translated to) that IPv4 address; `None` for any other IPv6 address.
pub fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = v6.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match v6.segments() {
        // IPv4-mapped ::ffff:a.b.c.d and IPv4-translated ::ffff:0:a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(last),
        // IPv4-compatible ::a.b.c.d (deprecated), but not :: and ::1,
        // which are IPv6's own unspecified and loopback addresses.
        [0, 0, 0, 0, 0, 0, _, _] if !v6.is_unspecified() && !v6.is_loopback() => Some(last),
        // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last),
        // 6to4 2002:AABB:CCDD::/48 (RFC 3056).
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from(u32::from(hi) << 16 | u32::from(lo))),
        _ => None,
    }
}

/// The address as it is judged: the embedded IPv4 address, if any.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => embedded_ipv4(v6).map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// An allow-list entry written in IPv4-mapped form (`::ffff:10.0.0.0/104`)
/// as the IPv4 range it means, since addresses are judged as IPv4.
fn canonical_net(net: IpNet) -> IpNet {
    if let (IpAddr::V6(v6), prefix) = (net.addr(), net.prefix_len())
        && prefix >= 96
        && let Some(v4) = v6.to_ipv4_mapped()
        && let Ok(mapped) = IpNet::new(IpAddr::V4(v4), prefix - 96)
    {
        return mapped;
    }
    net
}

/// Which blocked range `addr` is in, if any (ignoring the policy).
pub fn classify(addr: IpAddr) -> Option<Reason> {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(v4: Ipv4Addr) -> Option<Reason> {
    let [a, b, ..] = v4.octets();
    Some(match (a, b) {
        (0, _) => Reason::ThisNetwork,
        _ if v4 == Ipv4Addr::BROADCAST => Reason::Broadcast,
        (169, 254) => Reason::LinkLocal,
        (224..=239, _) => Reason::Multicast,
        (127, _) => Reason::Loopback,
        (10, _) | (172, 16..=31) | (192, 168) => Reason::Private,
        (100, 64..=127) => Reason::SharedAddressSpace,
        _ => return None,
    })
}

fn classify_v6(v6: Ipv6Addr) -> Option<Reason> {
    let first = v6.segments()[0];
    Some(if v6.is_unspecified() {
        Reason::Unspecified
    } else if v6.is_loopback() {
        Reason::Loopback
    } else if first & 0xffc0 == 0xfe80 {
        Reason::LinkLocal
    } else if first & 0xff00 == 0xff00 {
        Reason::Multicast
    } else if first & 0xfe00 == 0xfc00 {
        Reason::UniqueLocal
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn reason(policy: &AddressPolicy, s: &str) -> Option<Reason> {
        policy.check(ip(s)).err().map(|b| b.reason)
    }

    #[test]
    fn the_default_policy_blocks_only_the_always_blocked_ranges() {
        let p = AddressPolicy::default();
        let cases = [
            ("169.254.169.254", Some(Reason::LinkLocal)),
            ("169.254.0.0", Some(Reason::LinkLocal)),
            ("169.254.255.255", Some(Reason::LinkLocal)),
            ("169.255.0.1", None),
            ("169.253.255.255", None),
            ("fe80::1", Some(Reason::LinkLocal)),
            ("febf:ffff::1", Some(Reason::LinkLocal)),
            ("fec0::1", None),
            ("0.0.0.0", Some(Reason::ThisNetwork)),
            ("0.255.255.255", Some(Reason::ThisNetwork)),
            ("1.0.0.0", None),
            ("::", Some(Reason::Unspecified)),
            ("224.0.0.1", Some(Reason::Multicast)),
            ("239.255.255.255", Some(Reason::Multicast)),
            ("240.0.0.1", None),
            ("223.255.255.255", None),
            ("ff02::1", Some(Reason::Multicast)),
            ("255.255.255.255", Some(Reason::Broadcast)),
            ("255.255.255.254", None),
            ("127.0.0.1", None),
            ("::1", None),
            ("10.1.2.3", None),
            ("192.168.1.1", None),
            ("fd00::1", None),
            ("100.64.0.1", None),
            ("8.8.8.8", None),
            ("2001:4860:4860::8888", None),
        ];
        for (addr, want) in cases {
            assert_eq!(reason(&p, addr), want, "{addr}");
        }
    }

    #[test]
    fn block_private_also_blocks_loopback_rfc1918_unique_local_and_cgnat() {
        let p = AddressPolicy::new(true, &[]);
        let cases = [
            ("127.0.0.1", Some(Reason::Loopback)),
            ("127.255.255.254", Some(Reason::Loopback)),
            ("::1", Some(Reason::Loopback)),
            ("10.0.0.0", Some(Reason::Private)),
            ("10.255.255.255", Some(Reason::Private)),
            ("172.16.0.1", Some(Reason::Private)),
            ("172.31.255.255", Some(Reason::Private)),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.168.0.1", Some(Reason::Private)),
            ("192.169.0.1", None),
            ("fc00::1", Some(Reason::UniqueLocal)),
            ("fdff:ffff::1", Some(Reason::UniqueLocal)),
            ("fe00::1", None),
            ("100.64.0.0", Some(Reason::SharedAddressSpace)),
            ("100.127.255.255", Some(Reason::SharedAddressSpace)),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("169.254.169.254", Some(Reason::LinkLocal)),
            ("93.184.215.14", None),
            ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),
        ];
        for (addr, want) in cases {
            assert_eq!(reason(&p, addr), want, "{addr}");
        }
    }

    #[test]
    fn embedded_ipv4_forms_are_judged_by_their_ipv4_address() {
        let open = AddressPolicy::default();
        let strict = AddressPolicy::new(true, &[]);
        for addr in [
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe",
            "::ffff:0:169.254.169.254",
            "::169.254.169.254",
            "64:ff9b::169.254.169.254",
            "2002:a9fe:a9fe::1",
        ] {
            assert_eq!(reason(&open, addr), Some(Reason::LinkLocal), "{addr}");
        }
        assert_eq!(reason(&open, "::ffff:0.0.0.0"), Some(Reason::ThisNetwork));
        assert_eq!(reason(&open, "::ffff:224.0.0.1"), Some(Reason::Multicast));
        assert_eq!(reason(&open, "::ffff:7f00:1"), None);
        assert_eq!(reason(&strict, "::ffff:7f00:1"), Some(Reason::Loopback));
        assert_eq!(reason(&strict, "::ffff:10.0.0.1"), Some(Reason::Private));
        assert_eq!(
            reason(&strict, "64:ff9b::192.168.0.1"),
            Some(Reason::Private)
        );
        assert_eq!(reason(&strict, "::ffff:8.8.8.8"), None);
        assert_eq!(reason(&strict, "64:ff9b::8.8.8.8"), None);
        // :: and ::1 are IPv6's own, not IPv4-compatible 0.0.0.0 / 0.0.0.1.
        assert_eq!(reason(&open, "::1"), None);
        assert_eq!(reason(&strict, "::1"), Some(Reason::Loopback));
        assert_eq!(reason(&open, "::"), Some(Reason::Unspecified));
        assert_eq!(embedded_ipv4("::1".parse().unwrap()), None);
        assert_eq!(embedded_ipv4("2001:db8::1".parse().unwrap()), None);
        assert_eq!(
            embedded_ipv4("::ffff:1.2.3.4".parse().unwrap()),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
    }

    #[test]
    fn allow_cidrs_let_listed_addresses_through_in_every_form() {
        let p = AddressPolicy::new(
            true,
            &[
                net("127.0.0.1/32"),
                net("169.254.169.254/32"),
                net("fd00::/8"),
            ],
        );
        assert_eq!(reason(&p, "127.0.0.1"), None);
        assert_eq!(reason(&p, "::ffff:127.0.0.1"), None);
        assert_eq!(reason(&p, "127.0.0.2"), Some(Reason::Loopback));
        assert_eq!(reason(&p, "169.254.169.254"), None);
        assert_eq!(reason(&p, "169.254.169.253"), Some(Reason::LinkLocal));
        assert_eq!(reason(&p, "fd12::1"), None);
        assert_eq!(reason(&p, "fc00::1"), Some(Reason::UniqueLocal));
        assert_eq!(reason(&p, "::1"), Some(Reason::Loopback));

        // A mapped allow entry means its IPv4 range.
        let p = AddressPolicy::new(true, &[net("::ffff:10.0.0.0/104")]);
        assert_eq!(reason(&p, "10.9.9.9"), None);
        assert_eq!(reason(&p, "::ffff:10.9.9.9"), None);
        assert_eq!(reason(&p, "11.0.0.1"), None);
        assert_eq!(reason(&p, "192.168.0.1"), Some(Reason::Private));

        // An IPv6 range does not cover the IPv4 addresses embedded in it.
        let p = AddressPolicy::new(false, &[net("::/0")]);
        assert_eq!(reason(&p, "fe80::1"), None);
        assert_eq!(
            reason(&p, "::ffff:169.254.169.254"),
            Some(Reason::LinkLocal)
        );
    }

    #[test]
    fn the_error_says_the_address_is_blocked_and_why() {
        let open = AddressPolicy::default();
        let text = open.check(ip("169.254.169.254")).unwrap_err().to_string();
        assert_eq!(
            text,
            "blocked address 169.254.169.254 (link-local; see checks.allow_cidrs)"
        );
        let text = open
            .check(ip("::ffff:169.254.169.254"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            text,
            "blocked address ::ffff:169.254.169.254 (link-local as 169.254.169.254; \
             see checks.allow_cidrs)"
        );
        let strict = AddressPolicy::new(true, &[]);
        let mut blocked = strict.check(ip("127.0.0.1")).unwrap_err();
        blocked.host = Some("localhost".into());
        assert_eq!(
            blocked.to_string(),
            "blocked address 127.0.0.1 for localhost (loopback, \
             checks.block_private is on; see checks.allow_cidrs)"
        );
    }

    #[test]
    fn allowed_keeps_the_allowed_addresses_or_names_the_first_blocked() {
        let strict = AddressPolicy::new(true, &[]);
        let at = |s: &str| SocketAddr::new(ip(s), 80);
        let mixed = [at("127.0.0.1"), at("8.8.8.8"), at("::1")];
        assert_eq!(
            strict.allowed(mixed, Some("x.test")),
            Ok(vec![at("8.8.8.8")])
        );
        let blocked = strict
            .allowed([at("::1"), at("127.0.0.1")], Some("localhost"))
            .unwrap_err()
            .unwrap();
        assert_eq!(
            (blocked.addr, blocked.host.as_deref()),
            (ip("::1"), Some("localhost"))
        );
        let literal = strict.allowed([at("10.0.0.1")], None).unwrap_err().unwrap();
        assert_eq!(literal.host, None);
        assert_eq!(strict.allowed([], Some("x.test")), Err(None));
    }

    #[test]
    fn only_literal_url_hosts_are_checked_up_front() {
        let open = AddressPolicy::default();
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(
            open.check_url(&url("http://169.254.169.254/latest/meta-data/"))
                .is_err()
        );
        assert!(open.check_url(&url("http://[::ffff:a9fe:a9fe]/")).is_err());
        assert!(open.check_url(&url("http://0.0.0.0:8080/")).is_err());
        // The URL parser normalises other IPv4 spellings to the address.
        assert!(open.check_url(&url("http://2852039166/")).is_err());
        assert!(open.check_url(&url("http://0xa9.0xfe.0xa9.0xfe/")).is_err());
        assert!(open.check_url(&url("http://169.254.169.254./")).is_err());
        assert!(open.check_url(&url("http://127.0.0.1:80/")).is_ok());
        assert!(open.check_url(&url("http://metadata.internal/")).is_ok());
    }
}
