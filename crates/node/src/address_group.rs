//! Address groups: the unit in which a node counts connections from "one place", at its
//! peer port and at its HTTP port.
//!
//! One operator easily holds many addresses of one block (a /16 of IPv4, a /32 of IPv6),
//! rarely many blocks, so limits that count per group cost an attacker what Bitcoin
//! Core's eviction costs one (`src/netgroup.cpp`: /16 and /32). Connections from
//! `127.0.0.1` and `::1` are the operator's own (a `powchain devnet`, a local proxy, the
//! dashboard in a local browser): one group, [`AddressGroup::Local`], that per-group caps
//! do not limit. Every other loopback address (`127.1.2.3`) is grouped like a remote one,
//! which lets tests play strangers from many groups on one machine.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    /// The group of `ip`. An IPv6 address that carries an IPv4 address (6to4, Teredo,
    /// NAT64's well-known prefix) counts in that address's /16, as Bitcoin Core's net
    /// groups do: otherwise a 6to4 prefix would give an IPv4 /16 a second group, and all
    /// of a Teredo server's or a NAT64 gateway's clients would share one. Such an address
    /// is never the operator's own.
    pub fn of(ip: IpAddr) -> AddressGroup {
        match ip {
            IpAddr::V4(v4) => AddressGroup::of_v4(v4),
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return AddressGroup::of_v4(v4);
                }
                if v6.is_loopback() {
                    return AddressGroup::Local;
                }
                if let Some(v4) = embedded_ipv4(v6) {
                    let [a, b, _, _] = v4.octets();
                    return AddressGroup::V4([a, b]);
                }
                let octets = v6.octets();
                AddressGroup::V6([octets[0], octets[1], octets[2], octets[3]])
            }
        }
    }

    fn of_v4(v4: Ipv4Addr) -> AddressGroup {
        match v4.octets() {
            [127, 0, 0, 1] => AddressGroup::Local,
            [a, b, _, _] => AddressGroup::V4([a, b]),
        }
    }

    /// What one group may hold of `total` places (at the HTTP port: connections, event
    /// streams): an eighth, at least one.
    pub const fn share_of(total: usize) -> usize {
        let total = if total == 0 { 1 } else { total };
        total.div_ceil(8)
    }

    /// True if per-group caps apply to this group.
    pub fn is_capped(self) -> bool {
        self != AddressGroup::Local
    }
}

/// The IPv4 address a 6to4 (`2002::/16`), Teredo (`2001::/32`, the client's address
/// inverted in the last 32 bits) or NAT64 (`64:ff9b::/96`) address carries.
pub fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = v6.octets();
    match o {
        [0x20, 0x02, a, b, c, d, ..] => Some(Ipv4Addr::new(a, b, c, d)),
        [0x20, 0x01, 0x00, 0x00, .., a, b, c, d] => Some(Ipv4Addr::new(!a, !b, !c, !d)),
        [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, a, b, c, d] => {
            Some(Ipv4Addr::new(a, b, c, d))
        }
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_ipv6_address_carrying_an_ipv4_address_is_that_address_s_group() {
        let v4 = group("203.0.113.7");
        // 6to4: 2002:<the IPv4 address>::/48.
        assert_eq!(group("2002:cb00:7107::1"), v4);
        // Teredo: the client's address inverted in the last 32 bits.
        assert_eq!(group("2001:0:4136:e378:8000:63bf:34ff:8ef8"), v4);
        // NAT64's well-known prefix.
        assert_eq!(group("64:ff9b::cb00:7107"), v4);
        // Never the operator's own, whatever it carries.
        assert_eq!(group("2002:7f00:1::1"), AddressGroup::V4([127, 0]));
        assert!(group("64:ff9b::7f00:1").is_capped());
        // Other addresses of those /16 and /32 blocks are IPv6 groups as before.
        assert_eq!(
            group("2001:db8::1"),
            AddressGroup::V6([0x20, 0x01, 0x0d, 0xb8])
        );
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
