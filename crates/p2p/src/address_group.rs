//! Address groups: the unit in which the layer counts connections from "one place".
//!
//! One operator easily holds many addresses of one block (a /16 of IPv4, a /32 of IPv6),
//! rarely many blocks, so limits that count per group cost an attacker what Bitcoin
//! Core's eviction costs one (`src/netgroup.cpp`: /16 and /32). Connections from
//! `127.0.0.1` and `::1` are the operator's own local nodes (a `powchain devnet`, a local
//! proxy): one group, [`AddressGroup::Local`], that per-group caps do not limit. Every
//! other loopback address (`127.1.2.3`) is grouped like a remote one, which lets tests play
//! strangers from many groups on one machine.

use std::fmt;
use std::net::IpAddr;

/// The group an address counts in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum AddressGroup {
    /// `127.0.0.1` or `::1`: this machine's own nodes; not capped per group.
    Local,
    /// An IPv4 /16 (an IPv4-mapped IPv6 address counts as its IPv4 address).
    V4([u8; 2]),
    /// An IPv6 /32.
    V6([u8; 4]),
}

impl AddressGroup {
    /// The group of `ip`.
    pub fn of(ip: IpAddr) -> AddressGroup {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) if v4.octets() == [127, 0, 0, 1] => AddressGroup::Local,
            IpAddr::V6(v6) if v6.is_loopback() => AddressGroup::Local,
            IpAddr::V4(v4) => {
                let [a, b, _, _] = v4.octets();
                AddressGroup::V4([a, b])
            }
            IpAddr::V6(v6) => {
                let octets = v6.octets();
                AddressGroup::V6([octets[0], octets[1], octets[2], octets[3]])
            }
        }
    }

    /// True if per-group caps apply to this group.
    pub fn is_capped(self) -> bool {
        self != AddressGroup::Local
    }
}

impl fmt::Display for AddressGroup {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressGroup::Local => write!(formatter, "local"),
            AddressGroup::V4([a, b]) => write!(formatter, "{a}.{b}.0.0/16"),
            AddressGroup::V6([a, b, c, d]) => {
                write!(
                    formatter,
                    "{:x}:{:x}::/32",
                    u16::from_be_bytes([*a, *b]),
                    u16::from_be_bytes([*c, *d])
                )
            }
        }
    }
}

/// True if `ip` is an address of the public internet: not this machine's, not a private
/// or link-local network's, not one reserved for documentation, sharing or multicast.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
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
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || (a == 0x2001 && b == 0x0db8))
        }
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
        for public in ["203.1.113.7", "8.8.8.8", "2a00:1450::1", "::ffff:8.8.4.4"] {
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

    fn group(text: &str) -> AddressGroup {
        AddressGroup::of(text.parse().expect("an address"))
    }

    #[test]
    fn ipv4_addresses_group_by_their_first_sixteen_bits() {
        assert_eq!(group("203.0.113.7"), group("203.0.200.1"));
        assert_ne!(group("203.0.113.7"), group("203.1.113.7"));
        assert_eq!(group("203.0.113.7").to_string(), "203.0.0.0/16");
    }

    #[test]
    fn ipv6_addresses_group_by_their_first_thirty_two_bits() {
        assert_eq!(group("2001:db8:1::1"), group("2001:db8:ffff::2"));
        assert_ne!(group("2001:db8::1"), group("2001:db9::1"));
        assert_eq!(group("2001:db8::1").to_string(), "2001:db8::/32");
    }

    #[test]
    fn a_mapped_ipv4_address_is_its_ipv4_group() {
        assert_eq!(group("::ffff:203.0.113.7"), group("203.0.113.7"));
        assert_eq!(group("::ffff:127.0.0.1"), AddressGroup::Local);
    }

    #[test]
    fn only_the_standard_loopback_addresses_are_local_and_uncapped() {
        assert_eq!(group("127.0.0.1"), AddressGroup::Local);
        assert_eq!(group("::1"), AddressGroup::Local);
        assert!(!AddressGroup::Local.is_capped());
        let other_loopback = group("127.66.0.1");
        assert_eq!(other_loopback, AddressGroup::V4([127, 66]));
        assert!(other_loopback.is_capped());
    }
}
