//! The binary allocates with jemalloc built with one arena and its background thread
//! (crates/cli/src/main.rs, `.cargo/config.toml`): a build that lost them falls back to
//! glibc's malloc, or to an arena per core, and a syncing node's peak memory doubles
//! (docs/BENCHMARKS.md), or keeps the memory of a burst after it, without any other test
//! noticing.

#![cfg(not(target_env = "msvc"))]

use std::process::Command;

#[test]
fn the_binary_allocates_with_jemalloc_and_one_arena() {
    // jemalloc reads this variable (its prefixed name, as tikv-jemallocator builds it) at
    // start and prints its options and statistics to stderr at exit.
    let output = Command::new(env!("CARGO_BIN_EXE_powchain"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("the powchain binary runs");
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("jemalloc statistics"),
        "no jemalloc statistics: the binary does not allocate with jemalloc:\n{stderr:.2000}"
    );
    assert!(
        stderr.contains("opt.narenas: 1\n"),
        "jemalloc was not built with one arena (JEMALLOC_SYS_WITH_MALLOC_CONF):\n{stderr:.4000}"
    );
    assert!(
        stderr.contains("opt.background_thread: true"),
        "jemalloc was not built with its background thread (JEMALLOC_SYS_WITH_MALLOC_CONF), \
         so freed memory stays resident while the node is quiet:\n{stderr:.4000}"
    );
}
