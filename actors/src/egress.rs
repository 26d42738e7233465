//! Where the server may connect to: the egress policy every outbound connection passes.
//!
//! Operators point webhooks, MQTT and Redis distributors, UDP targets and stream sources
//! at addresses of their choosing. Without a policy that includes a cloud's metadata
//! service (`169.254.169.254`, which hands out credentials), the server's own API and any
//! internal host. The policy is a list of allowed and denied networks (`server.egress`):
//! the most specific network that holds an address decides (a tie goes to `deny`); an
//! address no rule holds is allowed when there is no `allow` list, refused otherwise. In
//! production mode link-local addresses, the metadata services and the server's own
//! listener are denied unless an `allow` entry is more specific.
//!
//! The check runs on addresses, after name resolution: a name is resolved, every address
//! it gives is checked, and plain-text connections are made to the checked address itself,
//! so a name that changes its answer between the check and the connection (DNS rebinding)
//! gets nowhere. TLS connections keep the name, which the peer's certificate must prove.
//! An address written in a configuration (`http://169.254.169.254/`) is refused when the
//! configuration is validated.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::OnceLock;

/// Networks production mode denies unless an `allow` entry is more specific: link-local
/// (which holds the usual metadata address), the IPv6 and Alibaba metadata services, and
/// "this network" and the unspecified IPv6 address (connecting to either reaches this
/// machine).
pub const PRODUCTION_DENY: [&str; 6] = [
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
    "0.0.0.0/8",
    "::/128",
];

/// A network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fe80::/10` or a single address.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| {
            format!("{text:?} is not an address or network (10.0.0.0/8, fe80::/10)")
        })?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0-{max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:169.254.169.254`) is the IPv4 address: no
/// spelling passes a rule the plain one does not.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[derive(Debug, Clone)]
struct Rule {
    net: Cidr,
    allow: bool,
    /// Said in refusals: where the rule comes from.
    origin: &'static str,
}

/// The policy; one per server, shared by every distributor and source.
#[derive(Debug, Default)]
pub struct EgressPolicy {
    rules: Vec<Rule>,
    /// An `allow` list exists: addresses no rule holds are refused.
    allow_listed: bool,
    /// Refuse the server's own listener (production).
    refuse_self: bool,
    /// The listener's address, once bound.
    own: OnceLock<SocketAddr>,
}

impl EgressPolicy {
    /// The policy of `allow` and `deny` lists; `production` adds [`PRODUCTION_DENY`] and
    /// the server's own listener. Every malformed entry is reported.
    pub fn new(allow: &[String], deny: &[String], production: bool) -> Result<Self, Vec<String>> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for (list, is_allow, key) in [(allow, true, "allow"), (deny, false, "deny")] {
            for (i, text) in list.iter().enumerate() {
                match Cidr::parse(text) {
                    Ok(net) => rules.push(Rule {
                        net,
                        allow: is_allow,
                        origin: if is_allow {
                            "server.egress.allow"
                        } else {
                            "server.egress.deny"
                        },
                    }),
                    Err(e) => errors.push(format!("server.egress.{key}[{i}]: {e}")),
                }
            }
        }
        if production {
            for text in PRODUCTION_DENY {
                if let Ok(net) = Cidr::parse(text) {
                    rules.push(Rule {
                        net,
                        allow: false,
                        origin: "production default: link-local and cloud metadata",
                    });
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            rules,
            allow_listed: !allow.is_empty(),
            refuse_self: production,
            own: OnceLock::new(),
        })
    }

    /// Anything goes (tools and tests without a server configuration).
    pub fn open() -> Self {
        Self::default()
    }

    /// Records the server's own listener, refused in production.
    pub fn set_own_listener(&self, address: SocketAddr) {
        let _ = self.own.set(address);
    }

    /// Whether `target` is this server's listener: its port at its address, at loopback or
    /// at the unspecified address (which connects to this machine). A server listening on
    /// every interface is not recognised at its interfaces' other addresses.
    fn is_self(&self, target: SocketAddr) -> bool {
        let Some(own) = self.own.get().filter(|_| self.refuse_self) else {
            return false;
        };
        let ip = canonical(target.ip());
        target.port() == own.port()
            && (ip == canonical(own.ip()) || ip.is_loopback() || ip.is_unspecified())
    }

    /// Whether the server may connect to `target`.
    pub fn check(&self, target: SocketAddr) -> Result<(), String> {
        let ip = canonical(target.ip());
        // Messages name the address as the rules see it (`::ffff:a.b.c.d` as `a.b.c.d`).
        let target = SocketAddr::new(ip, target.port());
        if self.is_self(target) {
            return Err(format!(
                "the egress policy refuses {target}: it is this server's own listener"
            ));
        }
        let decisive = self
            .rules
            .iter()
            .filter(|r| r.net.contains(ip))
            // Most specific first; on a tie deny (false) sorts before allow.
            .max_by_key(|r| (r.net.prefix, !r.allow));
        match decisive {
            Some(rule) if rule.allow => Ok(()),
            Some(rule) => Err(format!(
                "the egress policy refuses {target} (denied by {} in {})",
                rule.net, rule.origin
            )),
            None if self.allow_listed => Err(format!(
                "the egress policy refuses {target} (not in server.egress.allow)"
            )),
            None => Ok(()),
        }
    }

    /// Checks a host as written in a configuration: an address (or `localhost`) is checked
    /// now, a name when it is resolved, at each connection.
    pub fn check_written(&self, host: &str, port: u16) -> Result<(), String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.eq_ignore_ascii_case("localhost") {
            return self.check(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => self.check(SocketAddr::new(ip, port)),
            Err(_) => Ok(()),
        }
    }

    /// Checks a URL's host as written ([`EgressPolicy::check_written`]); an unreadable URL
    /// passes (its own validation says why).
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        match reqwest::Url::parse(url) {
            Ok(u) => self.check_written(
                u.host_str().unwrap_or_default(),
                u.port_or_known_default().unwrap_or(443),
            ),
            Err(_) => Ok(()),
        }
    }

    /// Resolves `host` through the policy: the allowed addresses, or an error naming the
    /// first refusal. With [`Use::ByName`] every address must be allowed.
    pub async fn resolve(&self, host: &str, port: u16, by: Use) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let found = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        self.judge(host, found.collect(), by)
    }

    /// [`resolve`](Self::resolve) on the calling thread (capture threads, UDP targets).
    pub fn resolve_blocking(
        &self,
        host: &str,
        port: u16,
        by: Use,
    ) -> Result<Vec<SocketAddr>, String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let found = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        self.judge(host, found.collect(), by)
    }

    fn judge(
        &self,
        host: &str,
        found: Vec<SocketAddr>,
        by: Use,
    ) -> Result<Vec<SocketAddr>, String> {
        let mut refusal = None;
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| match self.check(*a) {
                Ok(()) => true,
                Err(e) => {
                    refusal.get_or_insert(e);
                    false
                }
            })
            .collect();
        match refusal {
            Some(e) if allowed.is_empty() || by == Use::ByName => Err(format!("{host}: {e}")),
            _ if allowed.is_empty() => Err(format!("{host} resolves to no address")),
            _ => Ok(allowed),
        }
    }
}

/// How a resolved name will be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The caller connects to one of the addresses returned: the refused ones are left out.
    Connect,
    /// A library connects by name itself (TLS, which checks the name's certificate;
    /// ffmpeg) and picks its own address: every address must be allowed.
    ByName,
}

/// An HTTP client for `url` that connects only where `policy` allows (names resolve through
/// it), never follows redirects and ignores proxies from the environment (a proxy would make
/// every connection one to the proxy, past the policy). The HTTP distributor's and the
/// webhook rule action's.
pub fn http_client(url: &str, policy: &std::sync::Arc<EgressPolicy>) -> reqwest::Client {
    let port = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.port_or_known_default())
        .unwrap_or(443);
    reqwest::Client::builder()
        .user_agent(concat!("synopticon/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(EgressResolver {
            policy: policy.clone(),
            port,
        })
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default()
}

/// The webhook client's resolver: names resolve through the policy, so the client only
/// ever connects to allowed addresses (addresses written in the URL are checked when the
/// configuration is validated).
#[derive(Debug, Clone)]
pub struct EgressResolver {
    /// The policy.
    pub policy: std::sync::Arc<EgressPolicy>,
    /// The port the client connects to (the own-listener rule needs it).
    pub port: u16,
}

impl reqwest::dns::Resolve for EgressResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addresses = this
                .policy
                .resolve(name.as_str(), this.port, Use::Connect)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            let addrs: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn production_refuses_metadata_and_link_local_in_every_spelling() {
        let p = EgressPolicy::new(&[], &[], true).unwrap();
        for refused in [
            "169.254.169.254:80",
            "[::ffff:169.254.169.254]:80",
            "[::ffff:a9fe:a9fe]:80",
            "[fe80::1]:443",
            "[fd00:ec2::254]:80",
            "100.100.100.200:80",
        ] {
            let e = p.check(at(refused)).unwrap_err();
            assert!(e.contains("production default"), "{refused}: {e}");
        }
        for allowed in [
            "127.0.0.1:1883",
            "10.1.2.3:80",
            "[::1]:6379",
            "93.184.216.34:443",
        ] {
            assert!(p.check(at(allowed)).is_ok(), "{allowed}");
        }
        let open = EgressPolicy::new(&[], &[], false).unwrap();
        assert!(open.check(at("169.254.169.254:80")).is_ok());
    }

    #[test]
    fn the_most_specific_rule_decides_and_an_allow_list_closes_the_rest() {
        let p = EgressPolicy::new(
            &["10.1.2.3".into(), "192.168.0.0/16".into()],
            &[
                "10.0.0.0/8".into(),
                "192.168.7.0/24".into(),
                "192.168.0.0/16".into(),
            ],
            false,
        )
        .unwrap();
        assert!(
            p.check(at("10.1.2.3:80")).is_ok(),
            "a /32 allow beats a /8 deny"
        );
        assert!(p.check(at("10.1.2.4:80")).is_err());
        assert!(p.check(at("192.168.1.1:80")).is_err(), "a tie goes to deny");
        assert!(p.check(at("192.168.7.1:80")).is_err());
        let e = p.check(at("8.8.8.8:53")).unwrap_err();
        assert!(e.contains("not in server.egress.allow"), "{e}");
    }

    #[test]
    fn the_own_listener_is_refused_in_production_only() {
        let p = EgressPolicy::new(&[], &[], true).unwrap();
        p.set_own_listener(at("127.0.0.1:8080"));
        assert!(p
            .check(at("127.0.0.1:8080"))
            .unwrap_err()
            .contains("own listener"));
        assert!(p.check_written("localhost", 8080).is_err());
        assert!(p.check(at("127.0.0.1:8081")).is_ok());
        let lab = EgressPolicy::new(&[], &[], false).unwrap();
        lab.set_own_listener(at("127.0.0.1:8080"));
        assert!(lab.check(at("127.0.0.1:8080")).is_ok());
    }

    #[tokio::test]
    async fn the_webhook_client_connects_only_where_its_resolver_allows() {
        crate::distributor::http::install_crypto_provider();
        let policy =
            std::sync::Arc::new(EgressPolicy::new(&[], &["127.0.0.0/8".into()], false).unwrap());
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(EgressResolver { policy, port: 9 })
            .build()
            .unwrap();
        // A name, so validation could not have caught it: the resolver does.
        let error = client.get("http://localhost:9/").send().await.unwrap_err();
        let chain = format!("{:?}", error);
        assert!(
            chain.contains("egress policy refuses 127.0.0.1:9"),
            "{chain}"
        );
    }

    #[test]
    fn bad_entries_are_all_reported_and_names_wait_for_resolution() {
        let errors = EgressPolicy::new(
            &["10.0.0.0/33".into()],
            &["nope".into(), "::1/129".into()],
            false,
        )
        .unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        let p = EgressPolicy::new(&[], &[], true).unwrap();
        assert!(p.check_written("broker.example", 1883).is_ok());
        assert!(p.check_written("[fe80::1]", 1883).is_err());
        let resolved = p.resolve_blocking("localhost", 6379, Use::ByName).unwrap();
        assert!(resolved.iter().all(|a| a.ip().is_loopback()));
        p.set_own_listener(at("127.0.0.1:6379"));
        let refused = p
            .resolve_blocking("localhost", 6379, Use::Connect)
            .unwrap_err();
        assert!(refused.contains("own listener"), "{refused}");
    }
}
