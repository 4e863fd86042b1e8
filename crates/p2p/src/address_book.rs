//! The address book: where peers listen, learned from `PEERS`, from handshakes and from
//! other peers' `addr` messages; which of them are being dialled; which reach this node.
//!
//! ```text
//!   addr message ──rate limit (session)──▶ learn ──▶ known addresses (bounded, oldest
//!        learned evicted; one source may fill at most a share) ──candidate──▶ one dial
//!        when an outbound slot is free (outbound.rs), of an address group no outbound
//!        dial is in if it can; a failed dial waits longer each time, and after a few
//!        in a row the address is forgotten
//!   handshake ──insert──▶ known addresses ──shareable──▶ our answer to get_addr
//!   hello with our own nonce ──note_own──▶ never dialled again
//!   DELETE /peers/{url} ──remove──▶ forgotten, never dialled, learned or let in again
//!        until POST /peers names it (readmit)
//!   restart ──saved.rs──▶ the known addresses (with their sources) and anchors of the last run
//! ```
//!
//! Bounds (Bitcoin Core's addrman holds up to 81,920 addresses in buckets chosen by the
//! source's network group; a WebSocket address here is a full URL, and a small node needs
//! far fewer): [`MAX_KNOWN_ADDRESSES`] in all, [`MAX_ADDRESSES_PER_SOURCE`] learned from
//! any one peer, and [`MAX_LEARNED_DIALS`] dials of learned addresses connecting at a time
//! (`outbound.rs`).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::address_group::AddressGroup;
use crate::url::PeerUrl;

mod saved;

pub use saved::{MAX_ANCHORS, OWN_SOURCE, SavedAddress, SavedAddresses};

/// Addresses kept at most; beyond, the oldest learned one is forgotten.
pub const MAX_KNOWN_ADDRESSES: usize = 2_000;
/// Addresses one source may have in the book at most, so one peer's gossip cannot fill it.
pub const MAX_ADDRESSES_PER_SOURCE: usize = 200;
/// Dials of learned (not configured) addresses connecting at once at most: each holds a
/// socket while it connects, so gossip about unreachable addresses cannot take the node's
/// files. (Connected ones count as outbound peers, within `P2pConfig::max_outbound`.)
pub const MAX_LEARNED_DIALS: usize = 4;
/// Failed dials of a learned address in a row after which it is forgotten.
pub(crate) const MAX_LEARNED_FAILURES: u32 = 5;
/// How long a learned address waits before it is dialled again after a dial: doubled for
/// each failure in a row (up to the layer's `max_backoff`).
pub(crate) const RETRY_AFTER: Duration = Duration::from_millis(250);

/// How a dial of a learned address went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DialOutcome {
    /// A session that lasted: the address is good.
    Lasted,
    /// Already connected to it another way (under another name, say): counted as a
    /// failure, waiting the layer's longest backoff, so it is forgotten after a few.
    Duplicate,
    /// It is a node of another network: not dialled again for [`WRONG_NETWORK_WAIT`], nor
    /// shared with peers (kept in the book meanwhile, so gossip does not bring it back at
    /// once).
    WrongNetwork,
    /// No connection, no handshake, or a session that ended at once.
    Failed,
}

/// How long a learned address of another network waits before it is dialled again.
pub(crate) const WRONG_NETWORK_WAIT: Duration = Duration::from_secs(3_600);

/// When a learned address may be dialled again.
#[derive(Clone, Copy, Debug)]
struct Retry {
    failures: u32,
    not_before: Instant,
    /// Its last dial found a node of another network: not shared with peers.
    foreign: bool,
}

/// Who told us an address: a peer, by its address group (a local peer by its port), so one
/// that reconnects, or connects again from another address of its group, is one source;
/// or this node's own knowledge (`PEERS`, a handshake).
pub(crate) type Source = u64;

/// Known peer addresses and the dials in progress.
#[derive(Default)]
pub(crate) struct AddressBook {
    known: BTreeSet<PeerUrl>,
    /// Learned addresses, oldest first, with who told us: the eviction order.
    learned: VecDeque<(PeerUrl, Source)>,
    per_source: HashMap<Source, usize>,
    dialing: HashSet<PeerUrl>,
    learned_dials: HashSet<PeerUrl>,
    /// Learned dials that the operator made configured peers while they ran (`POST
    /// /peers`): their diallers keep dialling them when the one dial ends.
    promoted: HashSet<PeerUrl>,
    /// Addresses removed while a dialler ran for them: it is stopping.
    stopping: HashSet<PeerUrl>,
    /// Configured peers asked for again (`POST /peers`) while their dialler was stopping
    /// after a removal: it dials on instead.
    asked_again: HashSet<PeerUrl>,
    /// Learned addresses dialled before, and when they may be again.
    retries: HashMap<PeerUrl, Retry>,
    own: HashSet<PeerUrl>,
    /// Addresses the operator removed: only the operator fills it, through a protected
    /// endpoint, and only with addresses the book knew, so it needs no bound of its own.
    removed: HashSet<PeerUrl>,
    /// Addresses known only because a connected peer said it listens there, with how many
    /// of its sessions are open: forgotten when the last one ends, so the book holds at
    /// most one such address a connected peer (a stranger reconnecting with a new
    /// `listen_port` each time cannot grow it).
    from_sessions: HashMap<PeerUrl, usize>,
}

impl AddressBook {
    /// Remembers the parseable addresses among `addresses` that `source` told us and that
    /// are not ours, within the bounds; returns those it did not know.
    pub(crate) fn learn(&mut self, addresses: &[String], source: Source) -> Vec<PeerUrl> {
        let mut fresh = Vec::new();
        for text in addresses {
            let Ok(url) = PeerUrl::parse(text) else {
                continue;
            };
            if self.own.contains(&url) || self.known.contains(&url) || self.removed.contains(&url) {
                continue;
            }
            let from_source = self.per_source.get(&source).copied().unwrap_or(0);
            if from_source >= MAX_ADDRESSES_PER_SOURCE {
                break;
            }
            if self.known.len() >= MAX_KNOWN_ADDRESSES && !self.evict_oldest_learned() {
                break;
            }
            self.known.insert(url.clone());
            self.learned.push_back((url.clone(), source));
            *self.per_source.entry(source).or_default() += 1;
            fresh.push(url);
        }
        fresh
    }

    /// Forgets the oldest learned address that is not being dialled; false if none can go.
    fn evict_oldest_learned(&mut self) -> bool {
        let Some(position) = self
            .learned
            .iter()
            .position(|(url, _)| !self.dialing.contains(url))
        else {
            return false;
        };
        if let Some((url, source)) = self.learned.remove(position) {
            self.known.remove(&url);
            self.retries.remove(&url);
            self.release_source(source);
        }
        true
    }

    fn release_source(&mut self, source: Source) {
        if let Some(count) = self.per_source.get_mut(&source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    /// Forgets a learned address that could not be reached.
    pub(crate) fn forget(&mut self, url: &PeerUrl) {
        self.retries.remove(url);
        if self.unlearn(url) {
            self.known.remove(url);
        }
    }

    /// Takes `url` off the learned addresses (and its source's share); true if it was one.
    fn unlearn(&mut self, url: &PeerUrl) -> bool {
        let Some(position) = self.learned.iter().position(|(learned, _)| learned == url) else {
            return false;
        };
        if let Some((_, source)) = self.learned.remove(position) {
            self.release_source(source);
        }
        true
    }

    /// Remembers where a connected peer listens while its session lasts (never evicted
    /// meanwhile); [`AddressBook::session_ended`] says when it ends.
    pub(crate) fn insert(&mut self, url: PeerUrl) {
        if self.own.contains(&url) || self.removed.contains(&url) {
            return;
        }
        if let Some(sessions) = self.from_sessions.get_mut(&url) {
            *sessions += 1;
        } else if self.known.insert(url.clone()) {
            self.from_sessions.insert(url, 1);
        }
    }

    /// A session whose peer listens at `url` ended: an address known only from sessions
    /// is forgotten with the last of them.
    pub(crate) fn session_ended(&mut self, url: &PeerUrl) {
        let Some(sessions) = self.from_sessions.get_mut(url) else {
            return;
        };
        *sessions = sessions.saturating_sub(1);
        if *sessions == 0 {
            self.from_sessions.remove(url);
            if !self.dialing.contains(url) {
                self.known.remove(url);
            }
        }
    }

    /// Up to `max` addresses to share with a peer (a public one, `with_public_peer`, hears
    /// only of public addresses), drawn at random with `seed`: the first `max` in the
    /// book's order would let whoever gossips the addresses sorting first (a host's ports
    /// 1 to 100, say) be all this node ever tells anyone.
    pub(crate) fn shareable(&self, max: usize, with_public_peer: bool, seed: u64) -> Vec<String> {
        let mut drawn: Vec<(u64, &PeerUrl)> = self
            .known
            .iter()
            // A peer on the internet hears only of public addresses: this node's own
            // networks (its local nodes, say) are none of its business.
            .filter(|url| crate::address_group::may_share(with_public_peer, &url.host))
            // Another network's node is no use to our peers either.
            .filter(|url| !self.retries.get(*url).is_some_and(|retry| retry.foreign))
            .map(|url| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(&(seed, url), &mut hasher);
                (std::hash::Hasher::finish(&hasher), url)
            })
            .collect();
        drawn.sort_unstable();
        drawn
            .into_iter()
            .take(max)
            .map(|(_, url)| url.to_string())
            .collect()
    }

    /// `url` reaches this very node: never dial or share it.
    pub(crate) fn note_own(&mut self, url: &PeerUrl) {
        self.own.insert(url.clone());
        self.forget(url);
        self.known.remove(url);
        self.from_sessions.remove(url);
    }

    /// True if `url` reaches this node.
    pub(crate) fn is_own(&self, url: &PeerUrl) -> bool {
        self.own.contains(url)
    }

    /// The operator removed `url`: forget it, and let no dialler, gossip or handshake bring
    /// it back until [`AddressBook::readmit`]. True if the book knew it or was dialling it.
    pub(crate) fn remove(&mut self, url: &PeerUrl) -> bool {
        let was_known = self.known.contains(url) || self.dialing.contains(url);
        self.removed.insert(url.clone());
        if self.dialing.contains(url) {
            self.stopping.insert(url.clone());
        }
        self.forget(url);
        self.known.remove(url);
        self.from_sessions.remove(url);
        was_known
    }

    /// The operator asked for `url` again (`POST /peers`), or a removal found nothing to
    /// remove: it may be dialled, learned and let in again.
    pub(crate) fn readmit(&mut self, url: &PeerUrl) {
        self.removed.remove(url);
    }

    /// True if the operator removed `url`.
    pub(crate) fn is_removed(&self, url: &PeerUrl) -> bool {
        self.removed.contains(url)
    }

    /// The learned addresses being dialled: connecting, or connected (`outbound.rs` tells
    /// which).
    pub(crate) fn learned_dials(&self) -> impl ExactSizeIterator<Item = &PeerUrl> {
        self.learned_dials.iter()
    }

    /// A learned address to dial for an outbound slot at `now`, or none: not ours, not
    /// removed, not being dialled, not in `connected` (where connected peers listen), and
    /// not waiting after an earlier dial. One of an address group that no address being
    /// dialled (configured peers and learned ones, connected or not) is in, if there is
    /// one, so a few addresses of one operator cannot take every outbound slot; drawn at
    /// random with `seed` from those.
    pub(crate) fn candidate(
        &self,
        now: Instant,
        seed: u64,
        connected: &HashSet<PeerUrl>,
    ) -> Option<PeerUrl> {
        let taken: HashSet<DialGroup> = self.dialing.iter().map(DialGroup::of).collect();
        self.learned
            .iter()
            .map(|(url, _)| url)
            .filter(|url| {
                !self.dialing.contains(*url)
                    && !self.own.contains(*url)
                    && !self.removed.contains(*url)
                    && !connected.contains(*url)
                    && self
                        .retries
                        .get(*url)
                        .is_none_or(|retry| retry.not_before <= now)
            })
            .min_by_key(|url| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(&(seed, url), &mut hasher);
                (
                    taken.contains(&DialGroup::of(url)),
                    std::hash::Hasher::finish(&hasher),
                )
            })
            .cloned()
    }

    /// A dial of the learned address `url` ended at `now` as `outcome`: when it may be
    /// dialled again (`RETRY_AFTER` after a session that lasted; after a failure, that
    /// doubled for each failure in a row, at most `max_backoff`: 0.5, 1, 2 and 4 s with the
    /// defaults). True if it failed [`MAX_LEARNED_FAILURES`] times in a row and is
    /// forgotten.
    pub(crate) fn dial_ended(
        &mut self,
        url: &PeerUrl,
        outcome: DialOutcome,
        now: Instant,
        max_backoff: Duration,
    ) -> bool {
        if !self.learned.iter().any(|(learned, _)| learned == url) {
            return false;
        }
        let retry = self.retries.entry(url.clone()).or_insert(Retry {
            failures: 0,
            not_before: now,
            foreign: false,
        });
        retry.foreign = outcome == DialOutcome::WrongNetwork;
        let wait = match outcome {
            DialOutcome::Lasted => {
                retry.failures = 0;
                RETRY_AFTER
            }
            DialOutcome::Duplicate => {
                retry.failures += 1;
                max_backoff.max(RETRY_AFTER)
            }
            DialOutcome::Failed => {
                retry.failures += 1;
                RETRY_AFTER
                    .saturating_mul(1 << retry.failures.min(16))
                    .min(max_backoff.max(RETRY_AFTER))
            }
            DialOutcome::WrongNetwork => WRONG_NETWORK_WAIT,
        };
        retry.not_before = now + wait;
        if retry.failures >= MAX_LEARNED_FAILURES {
            self.forget(url);
            return true;
        }
        false
    }

    /// Marks `url` as being dialled; false if it is ours, the operator removed it, or a
    /// dialler already runs for it. A learned address (`persistent` false) counts among
    /// the learned dials (`outbound.rs` caps them). A configured peer's address
    /// (`persistent`) is no longer a learned one; if a learned dial holds it, that dial is
    /// taken over instead: it no longer counts among the learned dials, and its dialler
    /// goes on dialling it when its one dial ends ([`AddressBook::finish_learned_dial`]).
    pub(crate) fn begin_dial(&mut self, url: &PeerUrl, persistent: bool) -> bool {
        if self.own.contains(url) || self.removed.contains(url) {
            return false;
        }
        if persistent {
            self.retries.remove(url);
            self.unlearn(url);
            if self.learned_dials.remove(url) {
                self.stopping.remove(url);
                self.promoted.insert(url.clone());
                self.known.insert(url.clone());
                self.from_sessions.remove(url);
                return false;
            }
            if self.stopping.remove(url) {
                self.asked_again.insert(url.clone());
                return false;
            }
        }
        if self.dialing.contains(url) {
            return false;
        }
        if !persistent {
            self.learned_dials.insert(url.clone());
        }
        self.dialing.insert(url.clone());
        self.known.insert(url.clone());
        // Known by dialling from now on, not only from a session.
        self.from_sessions.remove(url);
        true
    }

    /// The one dial of the learned address `url` ended. True if it became a configured
    /// peer's while it ran: its dialler goes on dialling it as a configured peer's does
    /// (and calls [`AddressBook::end_dial`] when it stops). Else the dial is over. One
    /// step under the book's lock, so a configured peer's request cannot fall between
    /// the two.
    pub(crate) fn finish_learned_dial(&mut self, url: &PeerUrl) -> bool {
        if self.promoted.remove(url) {
            return true;
        }
        self.end_dial(url, false);
        false
    }

    /// The dialler for `url` stops. True if it goes on instead (when `may_go_on`): a
    /// configured peer asked for again while it ran, still not ours nor removed (a
    /// `POST /peers` that came while the dialler stopped after a `DELETE` is not lost).
    /// One step under the book's lock, as the stop and the request are.
    pub(crate) fn end_dial(&mut self, url: &PeerUrl, may_go_on: bool) -> bool {
        if self.asked_again.remove(url)
            && may_go_on
            && !self.own.contains(url)
            && !self.removed.contains(url)
        {
            return true;
        }
        self.stopping.remove(url);
        self.dialing.remove(url);
        self.learned_dials.remove(url);
        false
    }

    /// Addresses known.
    pub(crate) fn len(&self) -> usize {
        self.known.len()
    }
}

/// The address group a dialled address is in, for outbound diversity: an IP address's
/// [`AddressGroup`], except that this machine's own nodes (`127.0.0.1`, `::1`) count by
/// port, as they do as sources; a host name counts by itself (it is resolved only when
/// dialled).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum DialGroup {
    Group(AddressGroup),
    LocalPort(u16),
    Host(String),
}

impl DialGroup {
    fn of(url: &PeerUrl) -> DialGroup {
        let host = url.host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>().map(AddressGroup::of) {
            Ok(AddressGroup::Local) => DialGroup::LocalPort(url.port),
            Ok(group) => DialGroup::Group(group),
            Err(_) => DialGroup::Host(host.to_ascii_lowercase()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer on this machine at `port` (also for `saved.rs`'s tests).
    pub(super) fn url(port: u16) -> PeerUrl {
        PeerUrl {
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// The addresses at `ports`, as an `addr` message carries them.
    pub(super) fn texts(ports: std::ops::Range<u16>) -> Vec<String> {
        ports.map(|port| url(port).to_string()).collect()
    }

    #[test]
    fn a_connected_peer_s_listening_address_is_kept_only_while_it_is_connected() {
        let mut book = AddressBook::default();
        // A stranger reconnecting with a new listening port each time.
        for port in 1..=5_000 {
            book.insert(url(port));
            book.session_ended(&url(port));
        }
        assert_eq!(book.len(), 0, "nothing left behind");
        // Two sessions from one address: kept until both end.
        book.insert(url(7000));
        book.insert(url(7000));
        assert_eq!(book.shareable(10, false, 0), vec![url(7000).to_string()]);
        book.session_ended(&url(7000));
        assert_eq!(book.len(), 1);
        book.session_ended(&url(7000));
        assert_eq!(book.len(), 0);
        // Known otherwise (dialled, or learned): a session's end leaves it.
        assert!(book.begin_dial(&url(7001), true));
        book.insert(url(7001));
        book.session_ended(&url(7001));
        book.end_dial(&url(7001), false);
        assert_eq!(book.len(), 1, "a dialled address stays");
        book.learn(&texts(7002..7003), 1);
        book.insert(url(7002));
        book.session_ended(&url(7002));
        assert_eq!(book.len(), 2, "a learned address stays");
        // An address first known from a session and then dialled stays too.
        book.insert(url(7003));
        assert!(book.begin_dial(&url(7003), true));
        book.session_ended(&url(7003));
        assert_eq!(book.len(), 3);
    }

    #[test]
    fn learns_each_address_once_and_never_its_own() {
        let mut book = AddressBook::default();
        book.note_own(&url(5001));
        let fresh = book.learn(
            &[
                "ws://127.0.0.1:5001".into(),
                "ws://127.0.0.1:5002".into(),
                "not an address".into(),
                "ws://127.0.0.1:5002".into(),
            ],
            1,
        );
        assert_eq!(fresh, vec![url(5002)]);
        assert!(book.learn(&["ws://127.0.0.1:5002".into()], 1).is_empty());
        assert_eq!(
            book.shareable(10, false, 0),
            vec!["ws://127.0.0.1:5002".to_owned()]
        );
        assert!(
            book.shareable(10, true, 0).is_empty(),
            "a peer on the internet hears of no loopback address"
        );
        assert!(!book.begin_dial(&url(5001), true), "never dial ourselves");
        assert!(book.begin_dial(&url(5003), true));
        assert!(
            !book.begin_dial(&url(5003), true),
            "one dialler per address"
        );
        book.end_dial(&url(5003), false);
        assert!(book.begin_dial(&url(5003), true));
    }

    #[test]
    fn a_removed_address_is_forgotten_and_stays_out_until_readmitted() {
        let mut book = AddressBook::default();
        book.learn(&texts(5002..5003), 1);
        assert!(book.begin_dial(&url(5002), false));
        assert!(book.remove(&url(5002)), "it was known");
        assert!(book.is_removed(&url(5002)));
        assert!(book.shareable(10, false, 0).is_empty(), "no longer shared");
        assert!(
            book.learn(&texts(5002..5003), 2).is_empty(),
            "not learned again"
        );
        book.insert(url(5002));
        assert_eq!(book.len(), 0, "a handshake does not bring it back");
        book.end_dial(&url(5002), false);
        assert!(!book.begin_dial(&url(5002), true), "not dialled again");
        assert!(!book.remove(&url(5003)), "never known");
        book.readmit(&url(5002));
        assert!(
            book.begin_dial(&url(5002), true),
            "dialled once asked for again"
        );
    }

    #[test]
    fn a_learned_dial_the_operator_names_becomes_a_configured_peer_s() {
        let mut book = AddressBook::default();
        book.learn(&texts(5002..5003), 1);
        assert!(book.begin_dial(&url(5002), false));
        assert_eq!(book.learned_dials().len(), 1);
        assert!(
            !book.begin_dial(&url(5002), true),
            "its dialler goes on: no second one"
        );
        assert_eq!(book.learned_dials().len(), 0, "its learned slot is free");
        // However its one dial ends, it is not forgotten: it is no longer learned.
        for _ in 0..MAX_LEARNED_FAILURES {
            assert!(!book.dial_ended(
                &url(5002),
                DialOutcome::Failed,
                Instant::now(),
                Duration::from_secs(10)
            ));
        }
        assert!(book.finish_learned_dial(&url(5002)), "the dialler dials on");
        assert_eq!(book.len(), 1, "still known");
        assert_eq!(
            book.learn(&texts(5002..5003), 2),
            Vec::<PeerUrl>::new(),
            "and not learned again"
        );
        assert!(
            !book.begin_dial(&url(5002), true),
            "still dialled: no second dialler"
        );
        book.end_dial(&url(5002), false);
        assert!(
            book.begin_dial(&url(5002), true),
            "a dialler may start again"
        );

        // Forgotten after its last failure before the operator's request came: known again.
        book.learn(&texts(5003..5004), 1);
        assert!(book.begin_dial(&url(5003), false));
        for _ in 0..MAX_LEARNED_FAILURES {
            book.dial_ended(
                &url(5003),
                DialOutcome::Failed,
                Instant::now(),
                Duration::from_secs(10),
            );
        }
        assert_eq!(book.len(), 1, "5003 forgotten");
        assert!(!book.begin_dial(&url(5003), true));
        assert_eq!(book.len(), 2, "known while its dialler dials on");
        assert!(book.finish_learned_dial(&url(5003)));

        // A learned dial that nobody named simply ends.
        book.learn(&texts(5004..5005), 1);
        assert!(book.begin_dial(&url(5004), false));
        assert!(!book.finish_learned_dial(&url(5004)));
        assert_eq!(book.learned_dials().len(), 0);
        assert!(book.begin_dial(&url(5004), false), "no longer dialled");
    }

    #[test]
    fn a_configured_peer_asked_for_while_its_dialler_stops_is_dialled_on() {
        let mut book = AddressBook::default();
        assert!(book.begin_dial(&url(5002), true));
        // DELETE: the dialler sees the removal and is about to stop; POST comes first.
        book.remove(&url(5002));
        book.readmit(&url(5002));
        assert!(
            !book.begin_dial(&url(5002), true),
            "no second dialler while one runs"
        );
        assert!(book.end_dial(&url(5002), true), "the stopping one dials on");
        assert!(
            !book.end_dial(&url(5002), true),
            "asked for once, goes on once"
        );
        assert!(book.begin_dial(&url(5002), true), "released");

        // Asked for again while it runs and nothing stops it: nothing to note.
        assert!(!book.begin_dial(&url(5002), true));
        assert!(!book.end_dial(&url(5002), true), "it stops when it stops");
        assert!(book.begin_dial(&url(5002), true), "released");

        // Removed after it was asked for again: it stops.
        book.remove(&url(5002));
        book.readmit(&url(5002));
        assert!(!book.begin_dial(&url(5002), true));
        book.remove(&url(5002));
        assert!(!book.end_dial(&url(5002), true));
        // And at shutdown it stops whatever was asked.
        book.readmit(&url(5002));
        assert!(book.begin_dial(&url(5002), true));
        book.remove(&url(5002));
        book.readmit(&url(5002));
        assert!(!book.begin_dial(&url(5002), true));
        assert!(!book.end_dial(&url(5002), false));
        assert!(book.begin_dial(&url(5002), true), "released");
    }

    #[test]
    fn a_learned_address_the_operator_names_is_no_longer_a_candidate_nor_its_source_s() {
        let mut book = AddressBook::default();
        let now = Instant::now();
        let none = HashSet::new();
        book.learn(&texts(5000..5001), 1);
        assert!(book.begin_dial(&url(5000), true), "a configured peer now");
        book.end_dial(&url(5000), false);
        assert_eq!(
            book.candidate(now, 1, &none),
            None,
            "dialled only as configured"
        );
        assert_eq!(book.per_source.get(&1), None, "its source's share is freed");
        assert_eq!(book.len(), 1, "still known");

        // Ours: never promoted, and not made known again.
        book.learn(&texts(5001..5002), 1);
        assert!(book.begin_dial(&url(5001), false));
        book.note_own(&url(5001));
        assert!(!book.begin_dial(&url(5001), true));
        assert!(
            !book.finish_learned_dial(&url(5001)),
            "its dial simply ends"
        );
        assert_eq!(book.len(), 1, "ours is not made known again");
    }

    #[test]
    fn one_source_fills_at_most_its_share_and_the_book_stays_bounded() {
        let mut book = AddressBook::default();
        let fresh = book.learn(&texts(10_000..11_000), 1);
        assert_eq!(fresh.len(), MAX_ADDRESSES_PER_SOURCE, "one gossiping peer");
        let mut source = 2;
        let mut port = 20_000u16;
        while port < 40_000 {
            book.learn(&texts(port..port + 150), source);
            source += 1;
            port += 150;
        }
        assert_eq!(
            book.len(),
            MAX_KNOWN_ADDRESSES,
            "bounded, the oldest learned evicted"
        );
        assert!(
            !book
                .shareable(MAX_KNOWN_ADDRESSES, false, 0)
                .contains(&url(10_000).to_string()),
            "the first learned address was evicted"
        );
        book.forget(&url(port - 1));
        assert_eq!(book.len(), MAX_KNOWN_ADDRESSES - 1);
    }

    fn at(host: &str, port: u16) -> PeerUrl {
        PeerUrl {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn a_candidate_is_a_learned_address_not_dialled_connected_ours_or_removed() {
        let mut book = AddressBook::default();
        let now = Instant::now();
        let none = HashSet::new();
        assert_eq!(book.candidate(now, 1, &none), None, "an empty book");
        book.learn(&texts(5000..5005), 1);
        book.note_own(&url(5000));
        assert!(book.begin_dial(&url(5001), false));
        book.remove(&url(5002));
        let connected: HashSet<PeerUrl> = [url(5003)].into();
        // A configured peer, and a peer known only from its session: not candidates.
        assert!(book.begin_dial(&url(6000), true));
        book.insert(url(6001));
        for seed in 0..50 {
            assert_eq!(book.candidate(now, seed, &connected), Some(url(5004)));
        }
    }

    #[test]
    fn a_candidate_is_of_an_address_group_no_dial_is_in_when_one_is_known() {
        let mut book = AddressBook::default();
        let now = Instant::now();
        let none = HashSet::new();
        // One operator's twenty addresses in one /16, and one other address.
        let crowd: Vec<String> = (0..20u8)
            .map(|last| format!("ws://9.9.1.{last}:5001"))
            .collect();
        book.learn(&crowd, 1);
        book.learn(&["ws://8.8.8.8:5001".to_owned()], 2);
        assert!(
            book.begin_dial(&at("9.9.200.1", 5001), true),
            "dialling that /16"
        );
        for seed in 0..50 {
            assert_eq!(
                book.candidate(now, seed, &none),
                Some(at("8.8.8.8", 5001)),
                "the only address of another group"
            );
        }
        // Once that group is dialled too, any address will do, drawn at random.
        assert!(book.begin_dial(&at("8.8.8.8", 5001), false));
        let drawn: HashSet<PeerUrl> = (0..50)
            .filter_map(|seed| book.candidate(now, seed, &none))
            .collect();
        assert!(drawn.len() > 5, "drawn at random: {drawn:?}");
        assert!(drawn.iter().all(|url| url.host.starts_with("9.9.1.")));
        // This machine's nodes count by port: `::1` and `127.0.0.1` on one port are one
        // group, other ports others.
        let mut local = AddressBook::default();
        local.learn(&texts(7001..7003), 1);
        assert!(local.begin_dial(&at("::1", 7001), true));
        for seed in 0..50 {
            assert_eq!(local.candidate(now, seed, &none), Some(url(7002)));
        }
        assert_eq!(
            DialGroup::of(&at("2001:db8::1", 1)),
            DialGroup::of(&at("2001:db8:0:1::2", 2)),
            "an IPv6 /32"
        );
    }

    #[test]
    fn a_failed_learned_address_waits_longer_each_time_and_is_forgotten_after_a_few() {
        let mut book = AddressBook::default();
        let max_backoff = Duration::from_secs(30);
        let none = HashSet::new();
        let start = Instant::now();
        book.learn(&texts(5000..5001), 1);
        let mut now = start;
        for failure in 1..MAX_LEARNED_FAILURES {
            assert_eq!(book.candidate(now, 0, &none), Some(url(5000)));
            assert!(book.begin_dial(&url(5000), false));
            book.end_dial(&url(5000), false);
            assert!(!book.dial_ended(&url(5000), DialOutcome::Failed, now, max_backoff));
            let wait = RETRY_AFTER * (1 << failure);
            assert_eq!(
                book.candidate(now + wait - Duration::from_millis(1), 0, &none),
                None,
                "waits {wait:?} after failure {failure}"
            );
            now += wait;
        }
        assert_eq!(book.candidate(now, 0, &none), Some(url(5000)));
        assert!(
            book.dial_ended(&url(5000), DialOutcome::Failed, now, max_backoff),
            "forgotten after {MAX_LEARNED_FAILURES} failures in a row"
        );
        assert_eq!(book.len(), 0);
        assert_eq!(book.candidate(now + max_backoff, 0, &none), None);

        // A session that lasted starts the count again; a duplicate waits the longest.
        book.learn(&texts(5001..5002), 1);
        for _ in 1..MAX_LEARNED_FAILURES {
            book.dial_ended(&url(5001), DialOutcome::Failed, now, max_backoff);
        }
        book.dial_ended(&url(5001), DialOutcome::Lasted, now, max_backoff);
        assert_eq!(book.candidate(now + RETRY_AFTER, 0, &none), Some(url(5001)));
        assert!(!book.dial_ended(&url(5001), DialOutcome::Failed, now, max_backoff));
        book.dial_ended(&url(5001), DialOutcome::Duplicate, now, max_backoff);
        assert_eq!(book.candidate(now + max_backoff / 2, 0, &none), None);
        assert_eq!(book.candidate(now + max_backoff, 0, &none), Some(url(5001)));
        // Another network's node waits an hour, and stays known meanwhile, unshared.
        assert_eq!(book.shareable(10, false, 0), vec![url(5001).to_string()]);
        book.dial_ended(&url(5001), DialOutcome::WrongNetwork, now, max_backoff);
        assert_eq!(book.candidate(now + max_backoff, 0, &none), None);
        assert!(
            book.learn(&texts(5001..5002), 2).is_empty(),
            "not learned anew"
        );
        assert!(book.shareable(10, false, 0).is_empty(), "not shared");
        assert_eq!(
            book.candidate(now + WRONG_NETWORK_WAIT, 0, &none),
            Some(url(5001))
        );
    }

    #[test]
    fn shared_addresses_are_drawn_from_the_whole_book_not_its_first_entries() {
        let mut book = AddressBook::default();
        // 150 honest addresses, then a stranger's 100 ports of one host that sort first.
        let honest: Vec<String> = (0..150u8)
            .map(|last| format!("ws://9.9.9.{last}:5001"))
            .collect();
        book.learn(&honest, 1);
        let stranger: Vec<String> = (1..=100u16)
            .map(|port| format!("ws://1.1.1.1:{port}"))
            .collect();
        book.learn(&stranger, 2);
        let shared = book.shareable(100, true, 7);
        assert_eq!(shared.len(), 100);
        let honest_shared = shared
            .iter()
            .filter(|url| url.starts_with("ws://9.9.9."))
            .count();
        assert!(
            honest_shared >= 40,
            "{honest_shared} of 100 shared are honest"
        );
        assert_ne!(
            shared,
            book.shareable(100, true, 8),
            "another draw, another sample"
        );
    }
}
