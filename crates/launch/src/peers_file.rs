//! `<data dir>/peers.json`: the address book across restarts (Bitcoin Core's `peers.dat`
//! and `anchors.dat` in one file). Written at a clean stop and every
//! [`SAVE_INTERVAL`] while the node runs, atomically (a temporary file synced, then
//! renamed), so a crash loses at most that interval's learning and never the file.
//!
//! ```text
//!   start: peers.json ──read (≤ MAX_FILE_BYTES), checked──▶ SavedAddresses ──▶ P2pConfig
//!          missing: an empty book (a first start); damaged, another network's or of
//!          another version: moved aside as peers.json.damaged-<secs>, an empty book
//!   every SAVE_INTERVAL and at stop: P2p::saved_addresses ──▶ peers.json.tmp ──▶ peers.json
//! ```
//!
//! The file is the node's own, but the disk may damage it and a person may edit it, so it
//! is read as hostile input: bounded in size, each address parsed as `PEERS` is, lists cut
//! to the book's bounds. Nothing in it can stop the node from starting: the worst it
//! costs is the addresses (and a damaged file is kept aside for a look).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use powchain_consensus::Network;
use powchain_p2p::{MAX_ANCHORS, MAX_KNOWN_ADDRESSES, MAX_SAVED_REMOVALS, PeerUrl, SavedAddresses};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// The file's name in the data directory.
pub const PEERS_FILE_NAME: &str = "peers.json";
/// How often a running node saves its address book (Bitcoin Core: every 15 minutes).
pub const SAVE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// The format this build reads and writes.
const VERSION: u32 = 1;
/// A larger file is not read: the book's bounds (2,000 known addresses, 2 anchors and
/// 1,000 removals of at most 114 characters each) make about 350 KB at most.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The file as written.
#[derive(Serialize, Deserialize)]
struct PeersFile {
    version: u32,
    network: String,
    known: Vec<String>,
    anchors: Vec<String>,
    removed: Vec<String>,
}

/// Why the file was not read.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("it cannot be read: {0}")]
    Io(#[source] io::Error),
    #[error("it is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("it is not a peers file: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("it is of format {0}, this build reads {VERSION}")]
    Version(u32),
    #[error("it is of the network {0:?}")]
    Network(String),
}

/// Where the file is in `data_dir`.
pub fn peers_file_path(data_dir: &Path) -> PathBuf {
    data_dir.join(PEERS_FILE_NAME)
}

/// The address book the last run of `network`'s node in `data_dir` saved: empty if there
/// is none. A file that cannot be used is logged and, unless it could not be read at all,
/// moved aside (`peers.json.damaged-<unix seconds>`) so the next save does not overwrite it.
pub fn load(data_dir: &Path, network: Network, now_ms: u64) -> SavedAddresses {
    let path = peers_file_path(data_dir);
    let file = match read(&path, network) {
        Ok(Some(file)) => file,
        Ok(None) => return SavedAddresses::default(),
        Err(Unreadable::Io(error)) => {
            warn!(file = %path.display(), %error, "cannot read the saved peer addresses; starting without them");
            return SavedAddresses::default();
        }
        Err(problem) => {
            match powchain_node::move_aside(&path, now_ms) {
                Ok(aside) => warn!(
                    file = %path.display(),
                    kept_as = %aside.as_deref().unwrap_or(&path).display(),
                    "the saved peer addresses are not usable ({problem}); starting without them, the file kept aside"
                ),
                Err(error) => warn!(
                    file = %path.display(),
                    %error,
                    "the saved peer addresses are not usable ({problem}), nor could the file be moved aside; starting without them"
                ),
            }
            return SavedAddresses::default();
        }
    };
    let mut skipped = 0usize;
    let mut urls = |texts: Vec<String>, max: usize| -> Vec<PeerUrl> {
        let mut urls = Vec::new();
        for text in texts {
            match PeerUrl::parse(&text) {
                Ok(url) if urls.len() < max => urls.push(url),
                Ok(_) => {}
                Err(_) => skipped += 1,
            }
        }
        urls
    };
    let saved = SavedAddresses {
        known: urls(file.known, MAX_KNOWN_ADDRESSES),
        anchors: urls(file.anchors, MAX_ANCHORS),
        removed: urls(file.removed, MAX_SAVED_REMOVALS),
    };
    if skipped > 0 {
        warn!(file = %path.display(), skipped, "skipped saved peer addresses that are not addresses");
    }
    info!(
        known = saved.known.len(),
        anchors = saved.anchors.len(),
        removed = saved.removed.len(),
        "read the saved peer addresses"
    );
    saved
}

fn read(path: &Path, network: Network) -> Result<Option<PeersFile>, Unreadable> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Unreadable::Io(error)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Unreadable::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Unreadable::TooLarge);
    }
    let file: PeersFile = serde_json::from_slice(&bytes).map_err(Unreadable::Malformed)?;
    if file.version != VERSION {
        return Err(Unreadable::Version(file.version));
    }
    if file.network != network.to_string() {
        return Err(Unreadable::Network(file.network));
    }
    Ok(Some(file))
}

/// Writes `saved` as `network`'s address book in `data_dir`, replacing the last one at
/// once (a crash leaves the old file or the new, never a part).
///
/// # Errors
/// If the file cannot be written, synced or renamed into place.
pub fn save(data_dir: &Path, network: Network, saved: &SavedAddresses) -> io::Result<()> {
    let texts = |urls: &[PeerUrl]| urls.iter().map(ToString::to_string).collect();
    let file = PeersFile {
        version: VERSION,
        network: network.to_string(),
        known: texts(&saved.known),
        anchors: texts(&saved.anchors),
        removed: texts(&saved.removed),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    let path = peers_file_path(data_dir);
    let temporary = data_dir.join(format!("{PEERS_FILE_NAME}.tmp"));
    match fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    // Owner-only: whom a node connects to is its operator's business.
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    out.write_all(&bytes)?;
    out.sync_all()?;
    drop(out);
    if let Err(error) = fs::rename(&temporary, &path) {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    File::open(data_dir)?.sync_all()
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

    fn sample() -> SavedAddresses {
        SavedAddresses {
            known: vec![
                url(1),
                url(2),
                PeerUrl::parse("ws://[::1]:3").expect("an address"),
            ],
            anchors: vec![url(2)],
            removed: vec![url(9)],
        }
    }

    fn leftovers(folder: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(folder)
            .expect("the folder is listed")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_saved_book_reads_back_as_it_was_written() {
        let folder = tempfile::tempdir().expect("a temporary folder");
        assert_eq!(
            load(folder.path(), Network::Regtest, 0),
            SavedAddresses::default(),
            "no file: an empty book"
        );
        save(folder.path(), Network::Regtest, &sample()).expect("the file is written");
        assert_eq!(load(folder.path(), Network::Regtest, 0), sample());
        // Saved again over the last one, and nothing else left in the folder.
        save(folder.path(), Network::Regtest, &SavedAddresses::default()).expect("written again");
        assert_eq!(
            load(folder.path(), Network::Regtest, 0),
            SavedAddresses::default()
        );
        assert_eq!(leftovers(folder.path()), vec![PEERS_FILE_NAME.to_owned()]);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(peers_file_path(folder.path()))
            .expect("the file's metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_that_is_not_usable_is_kept_aside_and_the_node_starts_without_it() {
        let oversized = format!(
            "{{\"version\":1,\"network\":\"regtest\",\"known\":[{}],\"anchors\":[],\"removed\":[]}}",
            vec!["\"ws://127.0.0.1:1\""; 60_000].join(",")
        );
        let cases: [(&str, String); 6] = [
            ("garbage", "\u{0}\u{1}not json".to_owned()),
            ("truncated", r#"{"version":1,"network":"regtest","known":["ws://127.0.0.1:1""#.to_owned()),
            ("a list where an address goes", r#"{"version":1,"network":"regtest","known":[[1]],"anchors":[],"removed":[]}"#.to_owned()),
            ("another network's", r#"{"version":1,"network":"devnet","known":["ws://127.0.0.1:1"],"anchors":[],"removed":[]}"#.to_owned()),
            ("a later format", r#"{"version":2,"network":"regtest","known":[],"anchors":[],"removed":[]}"#.to_owned()),
            ("larger than the bound", oversized),
        ];
        for (case, text) in cases {
            let folder = tempfile::tempdir().expect("a temporary folder");
            let path = peers_file_path(folder.path());
            fs::write(&path, &text).expect("the file is written");
            assert_eq!(
                load(folder.path(), Network::Regtest, 1_700_000_000_000),
                SavedAddresses::default(),
                "{case}"
            );
            assert_eq!(
                leftovers(folder.path()),
                vec![format!("{PEERS_FILE_NAME}.damaged-1700000000")],
                "{case}: kept aside, so the next save does not overwrite it"
            );
            let aside = folder
                .path()
                .join(format!("{PEERS_FILE_NAME}.damaged-1700000000"));
            assert_eq!(
                fs::read_to_string(aside).expect("kept whole"),
                text,
                "{case}"
            );
        }
    }

    #[test]
    fn entries_that_are_not_addresses_are_skipped_and_lists_cut_to_the_book_s_bounds() {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let many =
            |count: u16| -> Vec<String> { (1..=count).map(|port| url(port).to_string()).collect() };
        let mut known = many(2_500);
        known.insert(0, "http://127.0.0.1:1".into());
        known.insert(1, "ws://127.0.0.1:0".into());
        known.insert(2, format!("ws://{}:1", "a".repeat(200)));
        let file = serde_json::json!({
            "version": 1,
            "network": "regtest",
            "known": known,
            "anchors": many(5),
            "removed": many(1_500),
        });
        fs::write(peers_file_path(folder.path()), file.to_string()).expect("written");
        let saved = load(folder.path(), Network::Regtest, 0);
        assert_eq!(saved.known.len(), MAX_KNOWN_ADDRESSES);
        assert_eq!(
            saved.known.first(),
            Some(&url(1)),
            "the bad entries skipped"
        );
        assert_eq!(saved.anchors, vec![url(1), url(2)]);
        assert_eq!(saved.removed.len(), MAX_SAVED_REMOVALS);
    }
}
