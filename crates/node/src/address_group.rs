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
    fn only_the_standard_loopback_addresses_are_local_and_uncapped() {
        assert_eq!(group("127.0.0.1"), AddressGroup::Local);
        assert_eq!(group("::1"), AddressGroup::Local);
        assert!(!AddressGroup::Local.is_capped());
        let other_loopback = group("127.66.0.1");
        assert_eq!(other_loopback, AddressGroup::V4([127, 66]));
        assert!(other_loopback.is_capped());
    }
}
