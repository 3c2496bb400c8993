//! The client's IP address: the socket peer, or `X-Forwarded-For` when (and only when)
//! the peer is a configured trusted proxy. Believing the header from anyone would let
//! a client pick a fresh rate-limit bucket per request (the legacy API's defect).

use std::net::IpAddr;

use http::HeaderMap;

/// One trusted address range (`10.0.0.0/8`, `::1`, `192.168.1.7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(value: &str) -> Result<Self, String> {
        let (address, prefix) = match value.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (value, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("'{value}' is not an IP address or CIDR"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{value}' has a bad prefix length"))?,
            None => max,
        };
        Ok(Self { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.network, ip) {
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

/// The configured trusted proxies (`TRUSTED_PROXIES`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses a comma-separated list (clap value parser); empty means nobody.
    pub fn parse(value: &str) -> Result<Self, String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(Cidr::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|cidr| cidr.contains(ip))
    }

    /// The client IP of a request from `peer` with `headers`. From a trusted peer the
    /// `X-Forwarded-For` chain is walked from the right (the entries our proxies
    /// appended) to the first address that is not itself a trusted proxy; entries to
    /// its left were written by the client and are never believed.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for entry in entries.into_iter().rev() {
            // Garbage ends the walk: whatever is left of it was not written by our proxies.
            let Ok(ip) = entry.parse::<IpAddr>() else {
                break;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as plain IPv4, so one client has one bucket.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", xff.parse().unwrap());
        headers
    }

    fn ip(value: &str) -> IpAddr {
        value.parse().unwrap()
    }

    #[test]
    fn cidrs_match_their_ranges_only() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nonsense").is_err());
    }

    #[test]
    fn forwarded_for_from_an_untrusted_peer_is_ignored() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();

        let client = proxies.client_ip(ip("203.0.113.9"), &headers("1.2.3.4"));

        assert_eq!(client, ip("203.0.113.9"));
    }

    #[test]
    fn forwarded_for_from_a_trusted_proxy_gives_the_rightmost_untrusted_address() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();

        let client =
            proxies.client_ip(ip("127.0.0.1"), &headers("6.6.6.6, 198.51.100.7, 10.0.0.2"));

        assert_eq!(client, ip("198.51.100.7"));
    }

    #[test]
    fn a_trusted_proxy_without_forwarded_for_is_the_client() {
        let proxies = TrustedProxies::parse("127.0.0.1").unwrap();

        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        assert_eq!(
            proxies.client_ip(ip("::ffff:127.0.0.1"), &headers("garbage")),
            ip("127.0.0.1")
        );
    }
}
