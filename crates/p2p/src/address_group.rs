//! Which addresses a peer may be told of, and which hosts are of the public internet.
//! The groups connections are counted in are [`AddressGroup`]s (`powchain_node`), shared
//! with the HTTP port.

use std::net::IpAddr;

pub use powchain_node::AddressGroup;
use powchain_node::address_group::embedded_ipv4;

/// True if `ip` is an address of the public internet: not this machine's, not a private
/// or link-local network's, not one reserved for documentation, sharing or multicast.
///
/// An IPv6 address that carries an IPv4 address (mapped, 6to4, Teredo, NAT64) is public
/// only if that address is: through a NAT64 gateway `64:ff9b::a00:1` reaches `10.0.0.1`.
/// The local-use NAT64 prefix, `64:ff9b:1::/48`, is never public.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .or_else(|| embedded_ipv4(v6))
            .map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, _, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                // Carrier-grade NAT's shared space, 100.64.0.0/10.
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let [a, b, ..] = v6.segments();
            let [_, _, c, d, e, f, ..] = v6.segments();
            !(v6.is_loopback()
                || (a == 0x64 && b == 0xff9b && c == 1)
                // IPv4-compatible (`::/96`) and IPv4-translated (`::ffff:0:0/96`, RFC
                // 6145) addresses: deprecated or a translator's, never a peer's to share.
                || (a == 0 && b == 0 && c == 0 && d == 0 && e == 0 && f == 0)
                || (a == 0 && b == 0 && c == 0 && d == 0 && e == 0xffff && f == 0)
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || (a == 0x2001 && b == 0x0db8))
        }
    }
}

/// True unless a peer connecting from `ip` is of this machine or of a private network: the
/// peers [`may_share`] trusts with any host. Stricter than [`is_public`] in one way: an
/// address that carries another (6to4, Teredo, NAT64, the ranges [`is_public`] refuses to
/// share) comes through a relay or a translator, and is never of the node's own networks,
/// whatever the address it carries.
pub(crate) fn is_public_peer(ip: IpAddr) -> bool {
    if is_public(ip) {
        return true;
    }
    match ip {
        IpAddr::V6(v6) => {
            v6.to_ipv4_mapped().is_none()
                && !v6.is_loopback()
                && !v6.is_unspecified()
                && !v6.is_unique_local()
                && !v6.is_unicast_link_local()
        }
        IpAddr::V4(_) => false,
    }
}

/// True if a peer connected from a public address (`peer_is_public`) or from this machine
/// or a private network may make this node learn, and so dial, `host`: a stranger on the
/// internet may share only public IP addresses, so it cannot make the node dial into its
/// own networks or look up names it chose; a peer of the node's own networks (the
/// tutorial's nodes on one machine, a simulation's hosts) may share any address.
pub(crate) fn may_share(peer_is_public: bool, host: &str) -> bool {
    if !peer_is_public {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(is_public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_peer_may_share_only_public_ip_addresses() {
        for public in [
            "203.1.113.7",
            "8.8.8.8",
            "2a00:1450::1",
            "::ffff:8.8.4.4",
            // 6to4, Teredo and NAT64 carrying 8.8.8.8.
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
            "64:ff9b::808:808",
        ] {
            assert!(may_share(true, public), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.5",
            "172.16.9.9",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            // 6to4, Teredo and NAT64 carrying 10.0.0.1 or 169.254.169.254, and the
            // local-use NAT64 prefix.
            "2002:a00:1::1",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "64:ff9b::a00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::808:808",
            "::a00:1",
            "::ffff:0:a00:1",
            "203.0.113.7",
            "localhost",
            "internal.example",
        ] {
            assert!(!may_share(true, private), "{private}");
            assert!(
                may_share(false, private),
                "{private} from a peer of our own networks"
            );
        }
    }

    #[test]
    fn a_peer_from_an_address_carrying_another_is_never_of_our_own_networks() {
        for relayed in [
            "2002:a00:1::1",
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "64:ff9b::a00:1",
            "64:ff9b:1::808:808",
            "::ffff:0:a00:1",
            "2001:db8::1",
            "8.8.8.8",
        ] {
            let ip = relayed.parse().expect("an address");
            assert!(is_public_peer(ip), "{relayed} is restricted as a stranger");
        }
        for own in [
            "10.1.2.3",
            "192.168.0.5",
            "127.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            let ip = own.parse().expect("an address");
            assert!(!is_public_peer(ip), "{own} is of our own networks");
        }
    }
}
