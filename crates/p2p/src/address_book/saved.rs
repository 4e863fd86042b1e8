//! What the address book keeps across restarts, as Bitcoin Core keeps `peers.dat` and
//! `anchors.dat`: the addresses it knows, each with who told it, and the learned peers it
//! was connected to (dialled first at the next start). The launcher reads and writes the
//! file (`powchain-launch`, `peers_file.rs`); this layer only gives and takes
//! [`SavedAddresses`].
//!
//! ```text
//!   P2p::saved_addresses ──▶ SavedAddresses { known (url, source), anchors } ──▶ peers.json
//!   peers.json ──▶ P2pConfig::saved_addresses ──AddressBook::restore──▶ learned addresses
//!        (within MAX_KNOWN_ADDRESSES, and each source within its share again); anchors
//!        dialled at start, before the fill
//! ```
//!
//! Without it a restarted node knew only its configured peers: if they were down, it
//! reached no one; and whoever it met first after a restart (a stranger gossiping a
//! hundred of its own addresses, say) chose all its outbound peers again. The anchors
//! are why an attacker that can make a node restart cannot pick its peers anew: Core
//! dials its last two block-relay-only peers first for the same reason. Each address
//! keeps its source, so a source's share ([`super::MAX_ADDRESSES_PER_SOURCE`]) holds across
//! restarts: with one source for all restored addresses, a stranger could add another
//! share at every restart, the oldest (restored) addresses going first. Removals (`DELETE
//! /peers`) are not kept: they last until the node stops, as `docs/API.md` says, so the
//! configured peers a restart names are never refused by an old removal.

use super::{AddressBook, MAX_ADDRESSES_PER_SOURCE, MAX_KNOWN_ADDRESSES};
use crate::url::PeerUrl;

/// Learned peers connected at the save that are dialled first at the next start (Bitcoin
/// Core keeps 2 anchors).
pub const MAX_ANCHORS: usize = 2;

/// The source of the addresses this node knows by itself (configured peers): it fills its
/// share like any other. Peers' sources are hashes of their address groups, which this
/// value matches once in 2^64.
pub const OWN_SOURCE: u64 = u64::MAX;

/// A known address and who told the node of it: a peer, by its address group as the book
/// counts sources (a hash, the same from run to run of one build), or [`OWN_SOURCE`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedAddress {
    /// Where the peer listens.
    pub url: PeerUrl,
    /// Who told the node of it.
    pub source: u64,
}

/// The address book's state that outlives a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedAddresses {
    /// Addresses known: learned ones, oldest first, then configured peers being dialled.
    /// Not kept: addresses known only because a connected peer claimed them, this
    /// node's own, nodes of another network, and those the operator removed.
    pub known: Vec<SavedAddress>,
    /// Learned peers connected outbound when saved, the longest connected first, at most
    /// [`MAX_ANCHORS`]: dialled first at the next start. Each is among `known`.
    pub anchors: Vec<PeerUrl>,
}

impl AddressBook {
    /// A book that starts from `saved`: its known addresses as learned ones, in order,
    /// within [`MAX_KNOWN_ADDRESSES`] and each source within its share (a file edited or
    /// damaged on disk cannot give one source more). Returns the anchors to dial first
    /// (those among the addresses the book took, at most [`MAX_ANCHORS`]).
    pub(crate) fn restore(saved: &SavedAddresses) -> (AddressBook, Vec<PeerUrl>) {
        let mut book = AddressBook::default();
        for SavedAddress { url, source } in &saved.known {
            if book.known.len() >= MAX_KNOWN_ADDRESSES {
                break;
            }
            if book.known.contains(url) {
                continue;
            }
            let from_source = book.per_source.entry(*source).or_default();
            if *from_source >= MAX_ADDRESSES_PER_SOURCE {
                continue;
            }
            *from_source += 1;
            book.known.insert(url.clone());
            book.learned.push_back((url.clone(), *source));
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
        let mut known: Vec<SavedAddress> = self
            .learned
            .iter()
            .filter(|(url, _)| keep(url))
            .map(|(url, source)| SavedAddress {
                url: url.clone(),
                source: *source,
            })
            .collect();
        let mut configured: Vec<&PeerUrl> = self
            .dialing
            .iter()
            .filter(|url| !self.learned_dials.contains(*url) && keep(url))
            .collect();
        configured.sort_unstable();
        known.extend(configured.into_iter().map(|url| SavedAddress {
            url: url.clone(),
            source: OWN_SOURCE,
        }));
        let anchors = anchors
            .into_iter()
            .filter(|url| self.learned_dials.contains(url) && keep(url))
            .take(MAX_ANCHORS)
            .collect();
        SavedAddresses { known, anchors }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::address_book::DialOutcome;
    use crate::address_book::tests::{texts, url};

    #[test]
    fn a_book_saved_and_restored_knows_what_it_knew() {
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
        let from = |port, source| SavedAddress {
            url: url(port),
            source,
        };
        assert_eq!(
            saved,
            SavedAddresses {
                known: vec![
                    from(1, 1),
                    from(3, 1),
                    from(4, 1),
                    from(5, 1),
                    from(6, 2),
                    from(100, OWN_SOURCE)
                ],
                anchors: vec![url(4), url(3)],
            }
        );

        let (mut restored, anchors) = AddressBook::restore(&saved);
        assert_eq!(anchors, vec![url(4), url(3)]);
        assert_eq!(restored.len(), 6);
        // Restored addresses are learned ones: candidates for the outbound slots.
        let candidate = restored.candidate(Instant::now(), 0, &Default::default());
        assert!(candidate.is_some_and(|url| saved.known.iter().any(|known| known.url == url)));
        // A removal lasts until the node stops: the removed address may be learned again.
        assert_eq!(restored.learn(&texts(2..3), 9), vec![url(2)]);
        // Each source keeps its share: source 1 had 4 addresses, so 196 more.
        assert_eq!(restored.learn(&texts(1000..1300), 1).len(), 196);
        assert_eq!(restored.learn(&texts(2000..2300), 9).len(), 199);
    }

    /// `ports`, each told by its own source, or all by `source`.
    fn known(ports: std::ops::RangeInclusive<u16>, source: Option<u64>) -> Vec<SavedAddress> {
        ports
            .map(|port| SavedAddress {
                url: url(port),
                source: source.unwrap_or(u64::from(port)),
            })
            .collect()
    }

    #[test]
    fn a_restored_book_stays_within_its_bounds() {
        let saved = SavedAddresses {
            known: known(1..=3_000, None),
            anchors: vec![url(1), url(2), url(3), url(4_000)],
        };
        let (book, anchors) = AddressBook::restore(&saved);
        assert_eq!(book.len(), MAX_KNOWN_ADDRESSES);
        assert_eq!(anchors, vec![url(1), url(2)]);
        // An anchor the book did not take is not dialled.
        let saved = SavedAddresses {
            known: known(1..=2_000, None),
            anchors: vec![url(4_000)],
        };
        assert!(AddressBook::restore(&saved).1.is_empty());
        // One source's share, however many the file gives it.
        let (one_source, _) = AddressBook::restore(&SavedAddresses {
            known: known(1..=1_000, Some(7)),
            anchors: Vec::new(),
        });
        assert_eq!(one_source.len(), MAX_ADDRESSES_PER_SOURCE);
        // The saved book of a full book holds as many as it did.
        let (full, _) = AddressBook::restore(&SavedAddresses {
            known: known(1..=3_000, None),
            anchors: Vec::new(),
        });
        assert_eq!(full.saved([]).known.len(), MAX_KNOWN_ADDRESSES);
    }
}
