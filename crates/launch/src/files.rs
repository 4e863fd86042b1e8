//! The file budget: how many connections each port may hold, so neither starves the other.
//!
//! Every connection is a file. The process may open as many as its soft limit allows
//! (often 1,024), and an accept that fails for want of one fails for both ports alike. So
//! at start the soft limit is raised to the hard one (as Bitcoin Core does), a reserve is
//! kept for the stores, the log and the runtime, and the rest is split: the peer port's
//! slots (inbound, outbound, dials, handshakes in progress) first, as they are small and
//! fixed, then the HTTP port's connection cap. If the limit is too low for the defaults,
//! the HTTP cap shrinks first, then the handshakes in progress, then the inbound slots,
//! never below a floor that keeps each port usable.
//!
//! ```text
//!   soft limit ──raise to hard──▶ limit = reserve (64) + peer port + HTTP port
//!     peer port: max_inbound + max_outbound (learned dials) + configured peers
//!                + ADDED_PEERS_ROOM (peers added while running) + max_pending
//!     HTTP port: HTTP_ACCEPT_FILES (9: the newcomer being placed, and those waiting for
//!                their group's connection to close) + the rest, at most its default (512)
//! ```

use powchain_p2p::P2pConfig;

/// Files kept for everything but connections: the chain and pool stores, the wallet and
/// cookie files, standard streams, the runtime's own descriptors, blocking threads' files.
pub const RESERVED_FILES: u64 = 64;
/// Files the HTTP accept loop holds beyond its connection cap (`powchain_api`).
pub const HTTP_ACCEPT_FILES: u64 = powchain_api::HTTP_ACCEPT_FILES as u64;
/// Peers the operator may add while the node runs (`POST /peers`, which dials them beside
/// the configured and learned ones) within the peer port's budget; more take from the
/// reserve.
pub const ADDED_PEERS_ROOM: usize = 4;
/// Fewest HTTP connections a budget gives (the dashboard and a client or two).
pub const MIN_HTTP_CONNECTIONS: usize = 8;
/// Fewest handshakes in progress a budget gives.
pub const MIN_PENDING: usize = 8;
/// Fewest inbound peers a budget gives.
pub const MIN_INBOUND: usize = 8;

/// How the files are shared out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileBudget {
    /// The process's soft limit on open files, after raising it.
    pub limit: u64,
    /// The most connections the HTTP port holds.
    pub http_connections: usize,
    /// The most inbound peers.
    pub max_inbound: usize,
    /// The most connections in their handshake.
    pub max_pending: usize,
    /// Files the peer port may hold at most.
    pub p2p_files: u64,
}

impl FileBudget {
    /// Shares `limit` files between the ports, starting from `p2p`'s slots and an HTTP cap
    /// of `http_default` (`p2p.peers` are the configured peers, dialled always).
    pub fn plan(limit: u64, p2p: &P2pConfig, http_default: usize) -> FileBudget {
        let available = limit.saturating_sub(RESERVED_FILES + HTTP_ACCEPT_FILES);
        let fixed = (p2p.max_outbound + p2p.peers.len() + ADDED_PEERS_ROOM) as u64;
        let mut max_inbound = p2p.max_inbound;
        let mut max_pending = p2p.max_pending;
        let p2p_files = |inbound: usize, pending: usize| fixed + (inbound + pending) as u64;
        let mut http = available
            .saturating_sub(p2p_files(max_inbound, max_pending))
            .min(http_default as u64) as usize;
        if http < MIN_HTTP_CONNECTIONS {
            http = MIN_HTTP_CONNECTIONS.min(http_default);
            let for_p2p = available.saturating_sub(http as u64);
            // Handshakes in progress give way first, then inbound slots.
            while p2p_files(max_inbound, max_pending) > for_p2p && max_pending > MIN_PENDING {
                max_pending -= 1;
            }
            while p2p_files(max_inbound, max_pending) > for_p2p && max_inbound > MIN_INBOUND {
                max_inbound -= 1;
            }
        }
        FileBudget {
            limit,
            http_connections: http,
            max_inbound,
            max_pending,
            p2p_files: p2p_files(max_inbound, max_pending),
        }
    }
}

/// Raises the soft limit on open files to the hard limit; returns the soft limit now in
/// force (the old one if it could not be raised, `None` if it cannot be read).
pub fn raise_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(%error, "could not raise the limit on open files");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roomy_limit_keeps_every_default() {
        let p2p = P2pConfig::default();
        let budget = FileBudget::plan(20_000, &p2p, 512);
        assert_eq!(budget.http_connections, 512);
        assert_eq!(budget.max_inbound, p2p.max_inbound);
        assert_eq!(budget.max_pending, p2p.max_pending);
        assert!(RESERVED_FILES + budget.p2p_files + HTTP_ACCEPT_FILES + 512 <= 20_000);
    }

    #[test]
    fn the_usual_soft_limit_of_1024_fits_both_ports() {
        let p2p = P2pConfig::default();
        let budget = FileBudget::plan(1_024, &p2p, 512);
        assert_eq!(budget.http_connections, 512);
        assert!(RESERVED_FILES + budget.p2p_files + HTTP_ACCEPT_FILES + 512 <= 1_024);
    }

    #[test]
    fn a_tight_limit_shrinks_http_first_then_handshakes_then_inbound() {
        let p2p = P2pConfig::default();
        let budget = FileBudget::plan(300, &p2p, 512);
        assert_eq!(budget.max_inbound, p2p.max_inbound);
        assert_eq!(budget.max_pending, p2p.max_pending);
        assert_eq!(
            RESERVED_FILES + budget.p2p_files + HTTP_ACCEPT_FILES + budget.http_connections as u64,
            300
        );

        let budget = FileBudget::plan(150, &p2p, 512);
        assert_eq!(budget.http_connections, MIN_HTTP_CONNECTIONS);
        assert!(budget.max_pending < p2p.max_pending);
        assert!(RESERVED_FILES + budget.p2p_files + HTTP_ACCEPT_FILES + 8 <= 150);

        let budget = FileBudget::plan(64, &p2p, 512);
        assert_eq!(budget.max_pending, MIN_PENDING);
        assert_eq!(budget.max_inbound, MIN_INBOUND);
        assert_eq!(budget.http_connections, MIN_HTTP_CONNECTIONS);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let limit = raise_file_limit().expect("readable");
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("readable");
        assert_eq!(limit, soft);
        assert!(soft == hard || hard == rlimit::INFINITY, "{soft} of {hard}");
    }
}
