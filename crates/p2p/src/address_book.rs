//! The address book: where peers listen, learned from `PEERS`, from handshakes and from
//! other peers' `addr` messages; which of them are being dialled; which reach this node.
//!
//! ```text
//!   addr message ──learn──▶ known addresses ──▶ dialler (connection.rs), if outbound room
//!   handshake ──insert──▶ known addresses ──shareable──▶ our answer to get_addr
//!   hello with our own nonce ──note_own──▶ never dialled again
//! ```

use std::collections::{BTreeSet, HashSet};

use crate::url::PeerUrl;

/// Known peer addresses and the dials in progress.
#[derive(Default)]
pub(crate) struct AddressBook {
    known: BTreeSet<PeerUrl>,
    dialing: HashSet<PeerUrl>,
    own: HashSet<PeerUrl>,
}

impl AddressBook {
    /// Remembers the parseable addresses among `addresses` that are not ours; returns
    /// those it did not know.
    pub(crate) fn learn(&mut self, addresses: &[String]) -> Vec<PeerUrl> {
        let mut fresh = Vec::new();
        for text in addresses {
            if let Ok(url) = PeerUrl::parse(text) {
                if !self.own.contains(&url) && self.known.insert(url.clone()) {
                    fresh.push(url);
                }
            }
        }
        fresh
    }

    /// Remembers where a connected peer listens.
    pub(crate) fn insert(&mut self, url: PeerUrl) {
        if !self.own.contains(&url) {
            self.known.insert(url);
        }
    }

    /// Up to `max` addresses to share with a peer.
    pub(crate) fn shareable(&self, max: usize) -> Vec<String> {
        self.known
            .iter()
            .take(max)
            .map(PeerUrl::to_string)
            .collect()
    }

    /// `url` reaches this very node: never dial or share it.
    pub(crate) fn note_own(&mut self, url: &PeerUrl) {
        self.own.insert(url.clone());
        self.known.remove(url);
    }

    /// True if `url` reaches this node.
    pub(crate) fn is_own(&self, url: &PeerUrl) -> bool {
        self.own.contains(url)
    }

    /// Marks `url` as being dialled; false if it is ours or a dialler already runs for it.
    pub(crate) fn begin_dial(&mut self, url: &PeerUrl) -> bool {
        if self.own.contains(url) || !self.dialing.insert(url.clone()) {
            return false;
        }
        self.known.insert(url.clone());
        true
    }

    /// The dialler for `url` stopped.
    pub(crate) fn end_dial(&mut self, url: &PeerUrl) {
        self.dialing.remove(url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(port: u16) -> PeerUrl {
        PeerUrl {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn learns_each_address_once_and_never_its_own() {
        let mut book = AddressBook::default();
        book.note_own(&url(5001));
        let fresh = book.learn(&[
            "ws://127.0.0.1:5001".into(),
            "ws://127.0.0.1:5002".into(),
            "not an address".into(),
            "ws://127.0.0.1:5002".into(),
        ]);
        assert_eq!(fresh, vec![url(5002)]);
        assert!(book.learn(&["ws://127.0.0.1:5002".into()]).is_empty());
        assert_eq!(book.shareable(10), vec!["ws://127.0.0.1:5002".to_owned()]);
        assert!(!book.begin_dial(&url(5001)), "never dial ourselves");
        assert!(book.begin_dial(&url(5003)));
        assert!(!book.begin_dial(&url(5003)), "one dialler per address");
        book.end_dial(&url(5003));
        assert!(book.begin_dial(&url(5003)));
    }
}
