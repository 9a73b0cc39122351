//! Requests this server makes to addresses its users chose (a push service's endpoint, a
//! Nightscout site to import from) must not reach into the server's own network: a user could
//! otherwise make it probe or call internal services (server-side request forgery), and read
//! the outcome back (the delivery log, an import's error). Only public addresses are
//! reachable, checked where the address is known: URL literals before the request, names as
//! they resolve (so a name that later resolves inward is refused too).

use std::net::{IpAddr, SocketAddr};

/// Whether `ip` is on the public internet: not loopback, private, link-local (cloud metadata
/// at 169.254.169.254), shared (carrier-grade NAT), benchmarking, reserved, multicast, "this
/// network", or an IPv6 form of one of those.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0 // "this network"
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (b & 0xfe) == 18) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || (first & 0xff00) == 0xff00 // multicast
                || v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] // NAT64
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| !is_public(IpAddr::V4(v4))))
        }
    }
}

/// The address a URL's host names literally (`https://10.0.0.5/`, `https://[::1]/`), if it
/// does. Such URLs are never resolved, so they must be checked themselves.
pub(crate) fn literal_address(url: &reqwest::Url) -> Option<IpAddr> {
    // (The URL parser already put IPv4 literals in their one canonical form, and IPv6
    // literals in brackets.)
    url.host_str()?.trim_matches(['[', ']']).parse().ok()
}

/// A resolver for HTTP clients that only ever connect to public addresses: a name's
/// non-public addresses are dropped, and a name with none left fails to resolve.
pub(crate) struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let public: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.1.2.3",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "64:ff9b::a00:1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(inside.parse().expect("ip")), "{inside}");
        }
        for outside in [
            "1.1.1.1",
            "8.8.8.8",
            "198.20.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public(outside.parse().expect("ip")), "{outside}");
        }
    }

    #[test]
    fn literal_hosts_are_found_and_names_are_not() {
        let url = |s: &str| reqwest::Url::parse(s).expect("url");
        assert_eq!(
            literal_address(&url("https://10.0.0.5/x")),
            Some("10.0.0.5".parse().expect("ip"))
        );
        assert_eq!(
            literal_address(&url("https://[::1]:8443/x")),
            Some("::1".parse().expect("ip"))
        );
        assert_eq!(literal_address(&url("https://fcm.googleapis.com/x")), None);
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_inward_does_not_resolve() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let name = reqwest::dns::Name::from_str("localhost").expect("name");
        let err = PublicOnly
            .resolve(name)
            .await
            .err()
            .expect("localhost is refused");
        assert!(err.to_string().contains("no public address"), "{err}");
    }
}
