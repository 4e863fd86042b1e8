//! Bans: peers that broke a rule are refused for a while.
//!
//! A ban applies to the peer's IP address. On loopback every local node shares one
//! address, so there a ban applies to the listening port the peer announced (or, if it
//! announced none, the port it connected from): local devnets keep working while the
//! misbehaving node is shut out.
//!
//! The operator may lift a ban early (`DELETE /peers/banned/{peer}`): the peer is named as
//! `GET /peers/banned` shows it ([`BanKey`]'s `Display` and `FromStr` agree).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{MutexGuard, PoisonError};

use crate::service::P2p;

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

    /// True if the peer is on the public internet (`address_group::is_public_peer`).
    pub(crate) fn is_public(&self) -> bool {
        match self {
            BanKey::LocalPort(_) => false,
            BanKey::Address(ip) => crate::address_group::is_public_peer(*ip),
        }
    }
}

/// Why a text names no peer a ban could apply to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} names no banned peer: give an IP address (10.0.0.7, 2001:db8::1) or a local node as \
     `localhost port N` (or `localhost:N`), as GET /peers/banned lists them"
)]
pub struct BanKeyError(pub String);

impl std::str::FromStr for BanKey {
    type Err = BanKeyError;

    /// Reads a ban's peer as [`BanKey`]'s `Display` writes it (`10.0.0.7`, `localhost port
    /// 5002`), or `localhost:5002`. A loopback address alone names no ban: local peers are
    /// banned by port.
    fn from_str(text: &str) -> Result<BanKey, BanKeyError> {
        let error = || BanKeyError(text.to_owned());
        let trimmed = text.trim();
        let local_port = trimmed
            .strip_prefix("localhost port ")
            .or_else(|| trimmed.strip_prefix("localhost:"));
        if let Some(port) = local_port {
            return port
                .trim()
                .parse()
                .map(BanKey::LocalPort)
                .map_err(|_| error());
        }
        let address: IpAddr = trimmed
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| error())?;
        if address.is_loopback() {
            return Err(error());
        }
        Ok(BanKey::Address(address))
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

/// Bans held at most: a stranger with many addresses cannot grow the list without bound.
/// When full, the ban that ends first makes room (Bitcoin Core's ban list is unbounded,
/// but filled only by the operator).
pub const MAX_BANS: usize = 10_000;

/// Bans in force.
#[derive(Default, Debug)]
pub struct BanList {
    bans: HashMap<BanKey, Ban>,
}

impl BanList {
    /// Bans `key` until `until_ms` for breaking `rule`.
    pub fn ban(&mut self, key: BanKey, until_ms: u64, rule: &str) {
        if self.bans.len() >= MAX_BANS && !self.bans.contains_key(&key) {
            let soonest = self
                .bans
                .iter()
                .min_by_key(|(_, ban)| ban.until_ms)
                .map(|(key, _)| *key);
            if let Some(soonest) = soonest {
                self.bans.remove(&soonest);
            }
        }
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

    /// Lifts the ban on `key`; true if one was in force at `now_ms` (an expired one is
    /// dropped all the same).
    pub fn unban(&mut self, key: &BanKey, now_ms: u64) -> bool {
        self.bans
            .remove(key)
            .is_some_and(|ban| ban.until_ms > now_ms)
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

impl P2p {
    fn bans(&self) -> MutexGuard<'_, BanList> {
        self.bans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bans in force, with the rule broken and when each ends.
    pub fn bans_in_force(&self) -> Vec<powchain_node::BanInfo> {
        let now = self.node.now_ms();
        self.bans()
            .active(now)
            .into_iter()
            .map(|(key, ban)| powchain_node::BanInfo {
                peer: key.to_string(),
                rule: ban.rule,
                until_ms: ban.until_ms,
            })
            .collect()
    }

    /// Bans in force: who and the rule broken.
    pub fn banned(&self) -> Vec<(String, String)> {
        let now = self.node.now_ms();
        self.bans()
            .active(now)
            .into_iter()
            .map(|(key, ban)| (key.to_string(), ban.rule))
            .collect()
    }

    /// Lifts the ban on `key` (the operator's `DELETE /peers/banned/{peer}`); true if one
    /// was in force. A dialler that kept trying the peer connects at its next attempt.
    pub fn unban(&self, key: &BanKey) -> bool {
        let now = self.node.now_ms();
        self.bans().unban(key, now)
    }

    /// True if `key` is banned now.
    pub(crate) fn is_banned(&self, key: &BanKey) -> bool {
        let now = self.node.now_ms();
        self.bans().is_banned(key, now)
    }

    /// Bans `key` for breaking `rule`.
    pub(crate) fn ban(&self, key: BanKey, rule: &str) {
        let until = self
            .node
            .now_ms()
            .saturating_add(self.config.ban_duration.as_millis() as u64);
        self.bans().ban(key, until, rule);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn the_list_is_bounded_and_the_ban_ending_first_makes_room() {
        let mut bans = BanList::default();
        for port in 0..MAX_BANS as u16 {
            bans.ban(BanKey::LocalPort(port), 1_000 + u64::from(port), "rule");
        }
        bans.ban(BanKey::LocalPort(u16::MAX), 50_000, "rule");
        assert_eq!(bans.active(0).len(), MAX_BANS);
        assert!(
            !bans.is_banned(&BanKey::LocalPort(0), 0),
            "the soonest to end went"
        );
        assert!(bans.is_banned(&BanKey::LocalPort(1), 0));
        assert!(bans.is_banned(&BanKey::LocalPort(u16::MAX), 0));
    }

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

    #[test]
    fn an_unban_lifts_a_ban_in_force_only() {
        let mut bans = BanList::default();
        let local = BanKey::LocalPort(5002);
        let remote = BanKey::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        bans.ban(local, 1_000, "bad-proof-of-work");
        bans.ban(remote, 1_000, "oversized-message");
        assert!(bans.unban(&local, 500));
        assert!(!bans.is_banned(&local, 500), "lifted");
        assert!(bans.is_banned(&remote, 500), "the other ban stays");
        assert!(!bans.unban(&local, 500), "nothing left to lift");
        assert!(
            !bans.unban(&remote, 1_000),
            "expired: nothing in force to lift"
        );
        assert!(bans.active(0).is_empty());
    }

    #[test]
    fn a_ban_key_reads_back_as_the_ban_list_shows_it() {
        let keys = [
            BanKey::LocalPort(5002),
            BanKey::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            BanKey::Address("2001:db8::1".parse().expect("an IPv6 address")),
        ];
        for key in keys {
            assert_eq!(key.to_string().parse::<BanKey>(), Ok(key), "{key}");
        }
        assert_eq!("localhost:5002".parse(), Ok(BanKey::LocalPort(5002)));
        assert_eq!(
            "[2001:db8::1]".parse::<BanKey>(),
            Ok(BanKey::Address(
                "2001:db8::1".parse().expect("an IPv6 address")
            ))
        );
        for bad in [
            "",
            "127.0.0.1",
            "::1",
            "localhost port x",
            "localhost:70000",
            "ws://a:1",
        ] {
            assert!(bad.parse::<BanKey>().is_err(), "{bad:?}");
        }
    }
}
