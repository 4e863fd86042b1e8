//! What the address book keeps across restarts, as Bitcoin Core keeps `peers.dat` and
//! `anchors.dat`: the addresses it knows, the learned peers it was connected to (dialled
//! first at the next start), and the addresses the operator removed. The launcher reads
//! and writes the file (`powchain-launch`, `peers_file.rs`); this layer only gives and
//! takes [`SavedAddresses`].
//!
//! ```text
//!   P2p::saved_addresses ──▶ SavedAddresses { known, anchors, removed } ──▶ peers.json
//!   peers.json ──▶ P2pConfig::saved_addresses ──AddressBook::restore──▶ learned addresses
//!        (within MAX_KNOWN_ADDRESSES), removals; anchors dialled at start, before the fill
//! ```
//!
//! Without it a restarted node knew only its configured peers: if they were down, it
//! reached no one; and whoever it met first after a restart (a stranger gossiping a
//! thousand of its own addresses, say) chose all its outbound peers again. The anchors
//! are why an attacker that can make a node restart cannot pick its peers anew: Core
//! dials its last two block-relay-only peers first for the same reason.

use super::{AddressBook, MAX_KNOWN_ADDRESSES, Source};
use crate::url::PeerUrl;

/// Learned peers connected at the save that are dialled first at the next start (Bitcoin
/// Core keeps 2 anchors).
pub const MAX_ANCHORS: usize = 2;
/// Removals the operator made that a restart keeps at most (they come from a protected
/// endpoint; the bound is for a file edited or damaged on disk).
pub const MAX_SAVED_REMOVALS: usize = 1_000;

/// The source of addresses read back from the node's own file: one source that may fill
/// the whole book, as it did before the restart ([`AddressBook::learn`] caps every other
/// source at [`super::MAX_ADDRESSES_PER_SOURCE`]). Peers' sources are hashes of their
/// address groups, which this value matches once in 2^64.
const SAVED_SOURCE: Source = u64::MAX;

/// The address book's state that outlives a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedAddresses {
    /// Addresses known: learned ones, oldest first, then configured peers being dialled.
    /// Not kept: addresses known only because a connected peer claimed them, this
    /// node's own, and nodes of another network.
    pub known: Vec<PeerUrl>,
    /// Learned peers connected outbound when saved, the longest connected first, at most
    /// [`MAX_ANCHORS`]: dialled first at the next start.
    pub anchors: Vec<PeerUrl>,
    /// Addresses the operator removed (`DELETE /peers`): still neither dialled, learned
    /// nor let in after a restart, until `POST /peers` names them.
    pub removed: Vec<PeerUrl>,
}

impl AddressBook {
    /// A book that starts from `saved`: its removals (at most [`MAX_SAVED_REMOVALS`]), then
    /// its known addresses and anchors as learned ones, in order, within
    /// [`MAX_KNOWN_ADDRESSES`]. Returns the anchors to dial first (those the book took).
    pub(crate) fn restore(saved: &SavedAddresses) -> (AddressBook, Vec<PeerUrl>) {
        let mut book = AddressBook::default();
        for url in saved.removed.iter().take(MAX_SAVED_REMOVALS) {
            book.removed.insert(url.clone());
        }
        for url in saved.known.iter().chain(&saved.anchors) {
            if book.known.len() >= MAX_KNOWN_ADDRESSES {
                break;
            }
            if book.removed.contains(url) || !book.known.insert(url.clone()) {
                continue;
            }
            book.learned.push_back((url.clone(), SAVED_SOURCE));
            *book.per_source.entry(SAVED_SOURCE).or_default() += 1;
        }
        let anchors = saved
            .anchors
            .iter()
            .filter(|url| book.known.contains(*url))
            .take(MAX_ANCHORS)
            .cloned()
            .collect();
        (book, anchors)
    }

    /// What to save of the book, with `anchors` (learned peers connected outbound, the
    /// longest connected first): those of them that are learned dials, at most
    /// [`MAX_ANCHORS`].
    pub(crate) fn saved(&self, anchors: impl IntoIterator<Item = PeerUrl>) -> SavedAddresses {
        let keep = |url: &PeerUrl| {
            !self.own.contains(url)
                && !self.removed.contains(url)
                && !self.retries.get(url).is_some_and(|retry| retry.foreign)
        };
        let mut known: Vec<PeerUrl> = self
            .learned
            .iter()
            .map(|(url, _)| url)
            .filter(|url| keep(url))
            .cloned()
            .collect();
        let mut configured: Vec<PeerUrl> = self
            .dialing
            .iter()
            .filter(|url| !self.learned_dials.contains(*url) && keep(url))
            .cloned()
            .collect();
        configured.sort_unstable();
        known.extend(configured);
        let anchors = anchors
            .into_iter()
            .filter(|url| self.learned_dials.contains(url) && keep(url))
            .take(MAX_ANCHORS)
            .collect();
        let mut removed: Vec<PeerUrl> = self.removed.iter().cloned().collect();
        removed.sort_unstable();
        removed.truncate(MAX_SAVED_REMOVALS);
        SavedAddresses {
            known,
            anchors,
            removed,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::address_book::DialOutcome;

    fn url(port: u16) -> PeerUrl {
        PeerUrl {
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn texts(ports: std::ops::Range<u16>) -> Vec<String> {
        ports.map(|port| url(port).to_string()).collect()
    }

    #[test]
    fn a_book_saved_and_restored_knows_what_it_knew_and_refuses_what_was_removed() {
        let mut book = AddressBook::default();
        book.learn(&texts(1..6), 1);
        book.learn(&texts(6..8), 2);
        // A configured peer, a connected stranger's claim, our own address, a removal and
        // a node of another network.
        assert!(book.begin_dial(&url(100), true));
        book.insert(url(200));
        book.note_own(&url(300));
        assert!(book.remove(&url(2)));
        assert!(book.begin_dial(&url(7), false));
        book.dial_ended(
            &url(7),
            DialOutcome::WrongNetwork,
            Instant::now(),
            std::time::Duration::from_secs(10),
        );
        book.end_dial(&url(7), false);
        // Learned dials connected outbound: 3 and 4 (the longest first), 5 and a
        // configured peer (not an anchor).
        for port in [3, 4, 5] {
            assert!(book.begin_dial(&url(port), false));
        }
        let saved = book.saved([url(4), url(100), url(3), url(5)]);
        assert_eq!(
            saved,
            SavedAddresses {
                known: vec![url(1), url(3), url(4), url(5), url(6), url(100)],
                anchors: vec![url(4), url(3)],
                removed: vec![url(2)],
            }
        );

        let (mut restored, anchors) = AddressBook::restore(&saved);
        assert_eq!(anchors, vec![url(4), url(3)]);
        assert_eq!(restored.len(), 6);
        assert!(restored.is_removed(&url(2)));
        assert!(
            restored.learn(&texts(2..3), 9).is_empty(),
            "a removal holds"
        );
        assert!(!restored.begin_dial(&url(2), false));
        // Restored addresses are learned ones: candidates for the outbound slots.
        let candidate = restored.candidate(Instant::now(), 0, &Default::default());
        assert!(candidate.is_some_and(|url| saved.known.contains(&url)));
        // And other sources still have their own share.
        assert_eq!(restored.learn(&texts(1000..1300), 9).len(), 200);
    }

    #[test]
    fn a_restored_book_stays_within_its_bounds() {
        let saved = SavedAddresses {
            known: (1..=3_000).map(url).collect(),
            anchors: vec![url(1), url(2), url(3), url(4_000)],
            removed: (10_000..12_000).map(url).collect(),
        };
        let (book, anchors) = AddressBook::restore(&saved);
        assert_eq!(book.len(), MAX_KNOWN_ADDRESSES);
        assert_eq!(anchors, vec![url(1), url(2)]);
        assert_eq!(book.removed.len(), MAX_SAVED_REMOVALS);
        // An anchor the book has no room for is not dialled.
        let saved = SavedAddresses {
            known: (1..=2_000).map(url).collect(),
            anchors: vec![url(4_000)],
            removed: Vec::new(),
        };
        assert!(AddressBook::restore(&saved).1.is_empty());
        // The saved book of a full book holds as many as it did.
        let (full, _) = AddressBook::restore(&SavedAddresses {
            known: (1..=3_000).map(url).collect(),
            ..SavedAddresses::default()
        });
        assert_eq!(full.saved([]).known.len(), MAX_KNOWN_ADDRESSES);
    }
}
