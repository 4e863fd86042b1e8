//! `<data dir>/peers.json`: the address book across restarts (Bitcoin Core's `peers.dat`
//! and `anchors.dat` in one file). Written at a clean stop and every
//! [`SAVE_INTERVAL`] while the node runs, atomically (a temporary file synced, then
//! renamed, one save at a time), so a crash loses at most that interval's learning and
//! never the file.
//!
//! ```text
//!   start: peers.json ──read (a regular file, ≤ MAX_FILE_BYTES), checked──▶ SavedAddresses
//!          ──▶ P2pConfig. Missing: an empty book (a first start). Damaged, another
//!          network's or of another format: moved aside as peers.json.damaged-<secs>,
//!          an empty book
//!   every SAVE_INTERVAL and at stop: P2p::saved_addresses ──▶ peers.json.tmp ──▶ peers.json
//! ```
//!
//! The file is the node's own, but the disk may damage it and a person may edit it, so it
//! is read as hostile input: bounded in size, each address parsed as `PEERS` is, lists cut
//! to the book's bounds (the book also holds each source to its share). Nothing in it can
//! stop the node from starting: the worst it costs is the addresses (and a damaged file
//! is kept aside for a look).

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use powchain_consensus::Network;
use powchain_node::FileWriteError;
use powchain_p2p::{MAX_ANCHORS, MAX_KNOWN_ADDRESSES, PeerUrl, SavedAddress, SavedAddresses};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// The file's name in the data directory.
pub const PEERS_FILE_NAME: &str = "peers.json";
/// How often a running node saves its address book (Bitcoin Core: every 15 minutes).
pub const SAVE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// The format this build reads and writes (1, written only by fffb283, held addresses
/// without their sources).
const VERSION: u32 = 2;
/// A larger file is not read. The largest book this build writes (2,000 addresses of
/// 111 characters, which `PeerUrl` keeps to characters JSON writes as they are, each with
/// a 20-digit source, and 2 anchors) takes about 360 KB: a test checks that it fits.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The file as written.
#[derive(Serialize, Deserialize)]
struct Contents {
    version: u32,
    network: String,
    known: Vec<KnownEntry>,
    anchors: Vec<String>,
}

/// A known address in the file. The source is written as 16 hexadecimal digits: a JSON
/// number past 2^53 is rounded by many tools that might edit the file.
#[derive(Serialize, Deserialize)]
struct KnownEntry {
    url: String,
    source: String,
}

/// Why the file was not read.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("it cannot be read: {0}")]
    Io(#[source] io::Error),
    #[error("it is not a regular file")]
    NotAFile,
    #[error("it is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("it is not a peers file: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("it is of format {0}, this build reads {VERSION}")]
    Version(u32),
    #[error("it is of the network {0:?}")]
    Network(String),
}

/// A node's `peers.json`: where it is, for which network, and one save at a time.
pub struct PeersFile {
    data_dir: PathBuf,
    network: Network,
    /// Held for a whole save: the periodic save and the stop's share the temporary file.
    saving: Mutex<()>,
}

impl PeersFile {
    /// The file of `network`'s node in `data_dir`.
    pub fn new(data_dir: PathBuf, network: Network) -> PeersFile {
        PeersFile {
            data_dir,
            network,
            saving: Mutex::new(()),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> PathBuf {
        self.data_dir.join(PEERS_FILE_NAME)
    }

    /// The address book the last run saved: empty if there is none. A file that cannot
    /// be used is logged and, unless it could not be read at all, moved aside
    /// (`peers.json.damaged-<unix seconds>`, from `now_ms`) so the next save does not
    /// overwrite it. Blocking: call it off the async runtime.
    pub fn load(&self, now_ms: u64) -> SavedAddresses {
        let path = self.path();
        let contents = match read(&path, self.network) {
            Ok(Some(contents)) => contents,
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
        let known = parse_within(
            &contents.known,
            MAX_KNOWN_ADDRESSES,
            &mut skipped,
            |entry| {
                Some(SavedAddress {
                    url: PeerUrl::parse(&entry.url).ok()?,
                    source: u64::from_str_radix(&entry.source, 16).ok()?,
                })
            },
        );
        let anchors = parse_within(&contents.anchors, MAX_ANCHORS, &mut skipped, |text| {
            PeerUrl::parse(text).ok()
        });
        if skipped > 0 {
            warn!(file = %path.display(), skipped, "skipped saved peer addresses that are not addresses");
        }
        info!(
            known = known.len(),
            anchors = anchors.len(),
            "read the saved peer addresses"
        );
        SavedAddresses { known, anchors }
    }

    /// Writes `saved`, replacing the last save at once (a crash leaves the old file or the
    /// new, never a part). Blocking: call it off the async runtime.
    ///
    /// # Errors
    /// If the file cannot be written, synced or renamed into place (the temporary file is
    /// then removed).
    pub fn save(&self, saved: &SavedAddresses) -> Result<(), FileWriteError> {
        let contents = Contents {
            version: VERSION,
            network: self.network.to_string(),
            known: saved
                .known
                .iter()
                .map(|known| KnownEntry {
                    url: known.url.to_string(),
                    source: format!("{:016x}", known.source),
                })
                .collect(),
            anchors: saved.anchors.iter().map(ToString::to_string).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&contents).map_err(|error| FileWriteError {
            path: self.path(),
            source: io::Error::other(error),
        })?;
        let _saving = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        powchain_node::replace_private_file(&self.path(), &bytes)
    }
}

/// The first `bound` of `entries` that `parse` accepts (the book keeps no more); the
/// ones it refuses, wherever they are, are counted in `skipped`.
fn parse_within<E, T>(
    entries: &[E],
    bound: usize,
    skipped: &mut usize,
    parse: impl Fn(&E) -> Option<T>,
) -> Vec<T> {
    let mut parsed = Vec::new();
    for entry in entries {
        match parse(entry) {
            Some(value) if parsed.len() < bound => parsed.push(value),
            Some(_) => {}
            None => *skipped += 1,
        }
    }
    parsed
}

fn read(path: &Path, network: Network) -> Result<Option<Contents>, Unreadable> {
    // Looked at before it is opened: opening a FIFO would wait for a writer for good.
    match fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() => return Err(Unreadable::NotAFile),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Unreadable::Io(error)),
    }
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(Unreadable::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Unreadable::TooLarge);
    }
    let contents: Contents = serde_json::from_slice(&bytes).map_err(Unreadable::Malformed)?;
    if contents.version != VERSION {
        return Err(Unreadable::Version(contents.version));
    }
    if contents.network != network.to_string() {
        return Err(Unreadable::Network(contents.network));
    }
    Ok(Some(contents))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(port: u16) -> PeerUrl {
        PeerUrl::parse(&format!("ws://127.0.0.1:{port}")).expect("an address")
    }

    fn known(url: PeerUrl, source: u64) -> SavedAddress {
        SavedAddress { url, source }
    }

    fn sample() -> SavedAddresses {
        SavedAddresses {
            known: vec![
                known(url(1), 7),
                known(url(2), u64::MAX),
                known(PeerUrl::parse("ws://[::1]:3").expect("an address"), 0),
            ],
            anchors: vec![url(2)],
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

    fn regtest_file(folder: &Path) -> PeersFile {
        PeersFile::new(folder.to_path_buf(), Network::Regtest)
    }

    #[test]
    fn a_saved_book_reads_back_as_it_was_written() {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let file = regtest_file(folder.path());
        assert_eq!(
            file.load(0),
            SavedAddresses::default(),
            "no file: an empty book"
        );
        file.save(&sample()).expect("the file is written");
        assert_eq!(file.load(0), sample());
        // Saved again over the last one, and nothing else left in the folder.
        file.save(&SavedAddresses::default())
            .expect("written again");
        assert_eq!(file.load(0), SavedAddresses::default());
        assert_eq!(leftovers(folder.path()), vec![PEERS_FILE_NAME.to_owned()]);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(file.path())
            .expect("the file's metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_largest_book_this_build_writes_is_read_back() {
        // 2,000 addresses as long as `PeerUrl` allows, each with the longest source.
        let folder = tempfile::tempdir().expect("a temporary folder");
        let file = regtest_file(folder.path());
        let host = |index: usize| format!("{index:05}{}", "a".repeat(95));
        let largest = SavedAddresses {
            known: (0..MAX_KNOWN_ADDRESSES)
                .map(|index| {
                    let url = PeerUrl::parse(&format!("ws://{}:65535", host(index)))
                        .expect("a 100-character host");
                    known(url, u64::MAX)
                })
                .collect(),
            anchors: (0..MAX_ANCHORS)
                .map(|index| {
                    PeerUrl::parse(&format!("ws://{}:65535", host(index))).expect("an address")
                })
                .collect(),
        };
        file.save(&largest).expect("written");
        let size = fs::metadata(file.path()).expect("metadata").len();
        assert!(size < MAX_FILE_BYTES / 2, "{size} bytes");
        assert_eq!(file.load(0), largest);
    }

    #[test]
    fn every_character_an_address_may_hold_is_written_as_one_byte() {
        // What keeps the largest book within the reader's bound: no address is longer in
        // the file than it is.
        for character in (0..=0xFFFF).filter_map(char::from_u32) {
            let text = format!("ws://a{character}b:1");
            if let Ok(url) = PeerUrl::parse(&text) {
                let written = serde_json::to_string(&url.to_string()).expect("a string");
                assert_eq!(written.len(), url.to_string().len() + 2, "{character:?}");
            }
        }
    }

    #[test]
    fn a_file_that_is_not_usable_is_kept_aside_and_the_node_starts_without_it() {
        let oversized = format!(
            "{{\"version\":2,\"network\":\"regtest\",\"known\":[{}],\"anchors\":[]}}",
            vec![r#"{"url":"ws://127.0.0.1:1","source":"0000000000000001"}"#; 30_000].join(",")
        );
        let cases: [(&str, String); 7] = [
            ("garbage", "\u{0}\u{1}not json".to_owned()),
            (
                "truncated",
                r#"{"version":2,"network":"regtest","known":[{"url":"ws://127.0.0.1:1""#.to_owned(),
            ),
            (
                "a list where an address goes",
                r#"{"version":2,"network":"regtest","known":[[1]],"anchors":[]}"#.to_owned(),
            ),
            (
                "another network's",
                r#"{"version":2,"network":"devnet","known":[],"anchors":[]}"#.to_owned(),
            ),
            (
                "the first format (fffb283's)",
                r#"{"version":1,"network":"regtest","known":["ws://127.0.0.1:1"],"anchors":[],"removed":[]}"#.to_owned(),
            ),
            (
                "a later format",
                r#"{"version":3,"network":"regtest","known":[],"anchors":[]}"#.to_owned(),
            ),
            ("larger than the bound", oversized),
        ];
        for (case, text) in cases {
            let folder = tempfile::tempdir().expect("a temporary folder");
            let file = regtest_file(folder.path());
            fs::write(file.path(), &text).expect("the file is written");
            assert_eq!(
                file.load(1_700_000_000_000),
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
        // A folder in its place (or a FIFO, which opening would wait on for good).
        let folder = tempfile::tempdir().expect("a temporary folder");
        let file = regtest_file(folder.path());
        fs::create_dir(file.path()).expect("a folder is made");
        assert_eq!(file.load(1_700_000_000_000), SavedAddresses::default());
        assert_eq!(
            leftovers(folder.path()),
            vec![format!("{PEERS_FILE_NAME}.damaged-1700000000")]
        );
    }

    #[test]
    fn entries_that_are_not_addresses_are_skipped_and_lists_cut_to_the_book_s_bounds() {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let file = regtest_file(folder.path());
        let entry = |text: String| serde_json::json!({"url": text, "source": "3"});
        let mut entries: Vec<serde_json::Value> = (1..=2_500)
            .map(|port| entry(url(port).to_string()))
            .collect();
        entries.insert(0, entry("http://127.0.0.1:1".into()));
        entries.insert(1, entry("ws://127.0.0.1:0".into()));
        entries.insert(2, entry(format!("ws://{}:1", "a".repeat(200))));
        entries.insert(3, entry("ws://a\u{1b}[2J:1".into()));
        entries.insert(
            4,
            serde_json::json!({"url": url(1).to_string(), "source": "x"}),
        );
        let contents = serde_json::json!({
            "version": 2,
            "network": "regtest",
            "known": entries,
            "anchors": (1..=5).map(|port| url(port).to_string()).collect::<Vec<_>>(),
        });
        fs::write(file.path(), contents.to_string()).expect("written");
        let saved = file.load(0);
        assert_eq!(saved.known.len(), MAX_KNOWN_ADDRESSES);
        assert_eq!(
            saved.known.first(),
            Some(&known(url(1), 3)),
            "the bad entries skipped"
        );
        assert_eq!(saved.anchors, vec![url(1), url(2)]);
    }
}
