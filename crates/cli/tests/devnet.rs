//! `powchain devnet` through the real binary: the README's first command starts a network
//! whose nodes connect and agree, and `--fresh` starts it again from new data, keeping the
//! configuration file and anything else it did not write (issue 15).

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use powchain_bench::harness::NODE_ENVIRONMENT;

const DEADLINE: Duration = Duration::from_secs(60);

/// A base port with `count` (at most 16) free consecutive ports after it (checked, then
/// released: a race with another program is possible but unlikely in the high range). Each
/// call takes its own block of 16 ports, so tests running side by side never pick the same.
fn free_ports(count: u16) -> u16 {
    static NEXT_BLOCK: AtomicU16 = AtomicU16::new(0);
    let seed = u16::try_from(std::process::id() % 1_500).expect("fits");
    loop {
        let block = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
        assert!(block < 200, "no {count} free consecutive ports found");
        let base = 30_000 + ((seed + block) % 1_800) * 16;
        if (0..count).all(|offset| TcpListener::bind((Ipv4Addr::LOCALHOST, base + offset)).is_ok())
        {
            return base;
        }
    }
}

/// A running `powchain devnet`, with its stdout lines.
struct Devnet {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Devnet {
    fn start(data_root: &Path, http: u16, p2p: u16, extra: &[&str]) -> Devnet {
        let mut command = Command::new(env!("CARGO_BIN_EXE_powchain"));
        command
            .args(["devnet", "--miner-threads", "1"])
            .args([
                "--http-port",
                &http.to_string(),
                "--p2p-port",
                &p2p.to_string(),
            ])
            .arg("--data-root")
            .arg(data_root)
            .args(extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for variable in NODE_ENVIRONMENT {
            command.env_remove(variable);
        }
        let mut child = command.spawn().expect("the binary starts");
        let (sender, lines) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Devnet {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line for which `found` holds.
    fn wait_for(&mut self, what: &str, found: impl Fn(&str) -> bool) -> String {
        let give_up = Instant::now() + DEADLINE;
        while let Some(left) = give_up.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if found(&line) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line {what} within {DEADLINE:?}: {:#?}", self.seen);
    }

    /// SIGTERM, then the exit status (with a deadline).
    fn stop(mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let give_up = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll") {
                assert!(
                    status.success(),
                    "devnet stopped with {status}: {:#?}",
                    self.seen
                );
                return;
            }
            assert!(Instant::now() < give_up, "devnet did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the devnet has started, announcing its dashboard.
    fn wait_until_ready(&mut self) {
        self.wait_for("announcing the dashboard", |line| {
            line.contains("for the dashboard")
        });
    }

    /// A one-node regtest devnet run from start to a clean stop, with `extra` flags; the
    /// lines it printed.
    fn run_once(data_root: &Path, http: u16, p2p: u16, extra: &[&str]) -> Vec<String> {
        let mut flags = vec!["--nodes", "1", "--network", "regtest"];
        flags.extend_from_slice(extra);
        let mut devnet = Devnet::start(data_root, http, p2p, &flags);
        devnet.wait_until_ready();
        let seen = devnet.seen.clone();
        devnet.stop();
        seen
    }

    /// Waits for the exit of a devnet expected to fail; everything it printed.
    fn failure(mut self) -> String {
        let give_up = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll") {
                assert!(!status.success(), "expected a failure: {:#?}", self.seen);
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(line);
                }
                return self.seen.join("\n");
            }
            assert!(Instant::now() < give_up, "devnet did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_mining_devnet_connects_its_nodes_and_they_agree() {
    let root = tempfile::tempdir().expect("temp dir");
    let http = free_ports(4);
    let p2p = http + 2;
    // The README's network (real proof of work, 3 s blocks): on regtest two miners find
    // hundreds of blocks a second and their tips rarely agree at the moment of a report.
    let mut devnet = Devnet::start(
        root.path(),
        http,
        p2p,
        &["--nodes", "2", "--mine", "--network", "devnet"],
    );
    devnet.wait_until_ready();
    let report = devnet.wait_for("with both nodes mining, connected and agreeing", |line| {
        line.contains("node 1: height")
            && line.contains("node 2: height")
            && line.contains("1 peers | node 2")
            && line.contains("tips agree")
            && !line.contains("node 1: height 0,")
    });
    assert!(report.contains("1 peers | tips agree") || report.ends_with("tips agree"));
    devnet.stop();
}

#[test]
fn fresh_starts_from_new_data_and_keeps_other_files() {
    let root = tempfile::tempdir().expect("temp dir");
    let http = free_ports(2);
    let p2p = http + 1;
    let data_dir = root.path().join(format!("regtest-{http}"));
    let wallet_file = data_dir.join("wallet.keys");

    Devnet::run_once(root.path(), http, p2p, &[]);
    let first_wallet = std::fs::read(&wallet_file).expect("the first run made a wallet");
    std::fs::write(data_dir.join("powchain.toml"), "miner-threads = 1\n").expect("write");
    std::fs::write(data_dir.join("notes.txt"), "mine").expect("write");

    // While something listens on the node's port, nothing is deleted.
    let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, http)).expect("hold the port");
    let printed = Devnet::start(
        root.path(),
        http,
        p2p,
        &["--nodes", "1", "--network", "regtest", "--fresh"],
    )
    .failure();
    assert!(
        printed.contains(&format!("port {http} is in use")),
        "{printed}"
    );
    assert_eq!(std::fs::read(&wallet_file).expect("kept"), first_wallet);
    drop(holder);

    let printed = Devnet::run_once(root.path(), http, p2p, &["--fresh"]);
    let line = printed
        .iter()
        .find(|line| line.contains("fresh start"))
        .unwrap_or_else(|| panic!("--fresh says what it deleted: {printed:#?}"));
    assert!(
        line.contains("chain.redb") && line.contains("wallet.keys"),
        "{line}"
    );
    let second_wallet = std::fs::read(&wallet_file).expect("a new wallet");
    assert_ne!(second_wallet, first_wallet, "--fresh made a new wallet");
    assert!(data_dir.join("powchain.toml").exists() && data_dir.join("notes.txt").exists());

    // Without --fresh the data stays.
    Devnet::run_once(root.path(), http, p2p, &[]);
    assert_eq!(std::fs::read(&wallet_file).expect("kept"), second_wallet);
}
