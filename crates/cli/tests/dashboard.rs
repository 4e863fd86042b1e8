//! The web dashboard in a real browser: starts a regtest node from the built binary (and a
//! second node as its peer), then runs `tests/browser/dashboard.test.mjs`, which drives
//! headless Chromium through playwright-core: mine with the button, send with the form,
//! watch blocks, the pool and balances change without a reload, read the node's errors,
//! and visit every page, saving a screenshot of each.
//!
//! ```text
//!   cargo test ──▶ powchain (regtest, port 0) ◀──ws── powchain (its peer)
//!       │               ▲ HTTP + /events
//!       └──▶ node tests/browser/dashboard.test.mjs <url> <screenshot dir> ──▶ /usr/bin/chromium
//! ```
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/browser`, so it is `#[ignore]`d in
//! a plain `cargo test` (shown as ignored, never as passed); `.ci/run` installs both and
//! runs it with `--ignored`, and then a missing prerequisite is a failure.
//! Screenshots go to `POWCHAIN_SCREENSHOT_DIR`, or `target/dashboard-screenshots/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use powchain_bench::harness::{regtest_command, wait_for_ports};
use tempfile::TempDir;

/// How long a node may take to print its ports.
const NODE_START_DEADLINE: Duration = Duration::from_secs(60);
/// How long the whole browser script may run (it takes about 10 s here).
const BROWSER_DEADLINE: Duration = Duration::from_secs(300);

/// A `powchain` process in a temporary data directory, killed when dropped.
struct NodeProcess {
    child: Child,
    http_url: String,
    p2p_port: u16,
    data_dir: TempDir,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `powchain --network regtest` on free ports and waits for both of them.
fn start_node(extra_args: &[String]) -> NodeProcess {
    let data_dir = tempfile::tempdir().expect("a temporary data directory");
    let mut child = regtest_command(Path::new(env!("CARGO_BIN_EXE_powchain")), data_dir.path())
        .args(["--miner-threads", "1"])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the powchain binary starts");
    let lines = forward_lines(child.stdout.take().expect("stdout is piped"));
    let errors = collect(child.stderr.take().expect("stderr is piped"));
    let ports = match wait_for_ports(&lines, NODE_START_DEADLINE) {
        Ok(ports) => ports,
        Err(reason) => {
            let _ = child.kill();
            let status = child.wait();
            let errors = errors.join().unwrap_or_default();
            panic!("the node did not start: {reason} ({status:?}): {errors}");
        }
    };
    // Keep draining stdout so the node never blocks on a full pipe.
    thread::spawn(move || for _ in lines {});
    NodeProcess {
        child,
        http_url: format!("http://{}", ports.http),
        p2p_port: ports.p2p_port,
        data_dir,
    }
}

/// Sends each line of `stream` to the returned channel, until the stream ends.
fn forward_lines(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Reads all of `stream` on a thread.
fn collect(mut stream: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Writes a line to the real stderr: the test harness captures `println!` and `eprintln!`,
/// but a skip or a summary must show in a passing run too.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The repository's root (this crate is `crates/cli`).
fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// Why the browser test cannot run here, if it cannot.
fn missing_prerequisite(root: &Path) -> Option<String> {
    let chromium = std::env::var_os("POWCHAIN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Some(format!(
            "{} is missing (apt-get install chromium)",
            chromium.display()
        ));
    }
    let playwright = root.join("tests/browser/node_modules/playwright-core/package.json");
    if !playwright.exists() {
        return Some(format!(
            "{} is missing (npm ci --prefix tests/browser)",
            playwright.display()
        ));
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|status| status.success()) {
        return Some("Node.js (`node`) is not on the PATH".into());
    }
    None
}

fn screenshot_dir(root: &Path) -> PathBuf {
    std::env::var_os("POWCHAIN_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/dashboard-screenshots"))
}

#[test]
#[ignore = "needs /usr/bin/chromium and `npm ci --prefix tests/browser`; .ci/run installs them and runs it"]
fn the_dashboard_works_in_headless_chromium() {
    let root = repository_root();
    if let Some(reason) = missing_prerequisite(&root) {
        panic!("the browser test cannot run: {reason}");
    }
    let screenshots = screenshot_dir(&root);
    std::fs::create_dir_all(&screenshots).expect("the screenshot folder can be made");
    // Old screenshots (a failure's among them) would mislead: this run writes a new set.
    for entry in std::fs::read_dir(&screenshots).expect("the screenshot folder reads") {
        let path = entry.expect("a folder entry").path();
        if path.extension().is_some_and(|extension| extension == "png") {
            std::fs::remove_file(&path).expect("an old screenshot can be removed");
        }
    }

    let node = start_node(&[]);
    // A second node connected to the first, so the peers page has someone to show.
    // It requires the API token, so the browser also enters a token on its wallet page.
    let peer = Some(node.p2p_port).map(|port| {
        start_node(&[
            "--peers".into(),
            format!("ws://127.0.0.1:{port}"),
            "--require-token".into(),
        ])
    });
    let peer_token = peer.as_ref().map(|peer| {
        std::fs::read_to_string(peer.data_dir.path().join(".cookie"))
            .expect("the peer wrote its cookie file")
            .trim()
            .to_owned()
    });

    let started = Instant::now();
    let mut browser = Command::new("node")
        .arg(root.join("tests/browser/dashboard.test.mjs"))
        .arg(&node.http_url)
        .arg(&screenshots)
        .env(
            "POWCHAIN_EXPECT_PEERS",
            if peer.is_some() { "1" } else { "0" },
        )
        .env(
            "POWCHAIN_TOKEN_NODE",
            peer.as_ref().map_or("", |peer| peer.http_url.as_str()),
        )
        .env("POWCHAIN_TOKEN_NODE_TOKEN", peer_token.unwrap_or_default())
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let stdout = collect(browser.stdout.take().expect("stdout is piped"));
    let stderr = collect(browser.stderr.take().expect("stderr is piped"));
    let status = loop {
        if let Some(status) = browser
            .try_wait()
            .expect("the browser script can be waited on")
        {
            break status;
        }
        if started.elapsed() > BROWSER_DEADLINE {
            let _ = browser.kill();
            let _ = browser.wait();
            panic!(
                "the browser script ran longer than {BROWSER_DEADLINE:?}:\n{}\n{}",
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    let output = format!(
        "{}{}",
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default()
    );
    println!("{output}");
    say(&format!(
        "dashboard browser test: {} in {:.1} s; screenshots in {}",
        output
            .lines()
            .rfind(|line| line.contains(" passed, "))
            .unwrap_or("no summary"),
        started.elapsed().as_secs_f64(),
        screenshots.display()
    ));
    assert!(
        status.success(),
        "the browser test failed ({status}); screenshots in {}:\n{output}",
        screenshots.display()
    );
    for page in [
        "overview",
        "blocks",
        "block",
        "transaction",
        "address",
        "pool",
        "peers",
        "wallet",
        "charts",
    ] {
        let file = screenshots.join(format!("{page}.png"));
        assert!(file.exists(), "no screenshot {}", file.display());
    }
    drop(peer);
}
