//! Bans: peers that broke a rule are refused for a while.
//!
//! A ban applies to the peer's IP address. On loopback every local node shares one
//! address, so there a ban applies to the listening port the peer announced (or, if it
//! announced none, the port it connected from): local devnets keep working while the
//! misbehaving node is shut out.

use std::collections::HashMap;
use std::net::IpAddr;

/// Who a ban applies to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BanKey {
    /// A remote address.
    Address(IpAddr),
    /// A local peer, by port.
    LocalPort(u16),
}

impl BanKey {
    /// The key for a peer at `ip` that announced `port`.
    pub fn for_peer(ip: IpAddr, port: u16) -> BanKey {
        if ip.is_loopback() {
            BanKey::LocalPort(port)
        } else {
            BanKey::Address(ip)
        }
    }
}

impl std::fmt::Display for BanKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BanKey::Address(ip) => write!(formatter, "{ip}"),
            BanKey::LocalPort(port) => write!(formatter, "localhost port {port}"),
        }
    }
}

/// A ban in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    /// Until when, ms since the epoch.
    pub until_ms: u64,
    /// The rule broken.
    pub rule: String,
}

/// Bans in force.
#[derive(Default, Debug)]
pub struct BanList {
    bans: HashMap<BanKey, Ban>,
}

impl BanList {
    /// Bans `key` until `until_ms` for breaking `rule`.
    pub fn ban(&mut self, key: BanKey, until_ms: u64, rule: &str) {
        self.bans.insert(
            key,
            Ban {
                until_ms,
                rule: rule.to_owned(),
            },
        );
    }

    /// True if `key` is banned at `now_ms` (expired bans are dropped).
    pub fn is_banned(&mut self, key: &BanKey, now_ms: u64) -> bool {
        match self.bans.get(key) {
            Some(ban) if ban.until_ms > now_ms => true,
            Some(_) => {
                self.bans.remove(key);
                false
            }
            None => false,
        }
    }

    /// Bans in force at `now_ms`.
    pub fn active(&self, now_ms: u64) -> Vec<(BanKey, Ban)> {
        self.bans
            .iter()
            .filter(|(_, ban)| ban.until_ms > now_ms)
            .map(|(key, ban)| (*key, ban.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn bans_expire_and_loopback_bans_are_per_port() {
        let mut bans = BanList::default();
        let local = BanKey::for_peer(IpAddr::V4(Ipv4Addr::LOCALHOST), 5002);
        assert_eq!(local, BanKey::LocalPort(5002));
        bans.ban(local, 1_000, "bad-proof-of-work");
        assert!(bans.is_banned(&local, 999));
        assert!(!bans.is_banned(&BanKey::LocalPort(5003), 999));
        assert_eq!(bans.active(999).len(), 1);
        assert!(!bans.is_banned(&local, 1_000));
        assert!(bans.active(0).is_empty());
        let remote = BanKey::for_peer(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 5002);
        assert_eq!(
            remote,
            BanKey::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        );
    }
}
