//! The documentation cites only files that exist: every repository path in the README,
//! ARCHITECTURE.md and docs/ (`crates/p2p/src/session.rs`, `docs/API.md`, ...) names a
//! file or folder of this checkout, and every source file named alone (`overlay.rs`) is a
//! file somewhere in the tree. A refactor that moves code therefore fails here until the
//! map is updated.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/cli sits two folders below the root")
        .to_path_buf()
}

/// The documents checked: the README, the architecture map and everything in docs/.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut documents = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut folders = vec![root.join("docs")];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder).expect("docs/ is readable");
        for entry in entries {
            let path = entry.expect("a readable entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|extension| extension == "md") {
                documents.push(path);
            }
        }
    }
    documents.sort();
    documents
}

/// Every file name below `folder`, skipping build output and dependencies.
fn file_names(folder: &Path, names: &mut BTreeSet<String>) {
    // A folder of the checkout that cannot be read fails the test: skipping it would let a
    // document name a file that is not there.
    let entries = std::fs::read_dir(folder)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", folder.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|error| {
            panic!("cannot read an entry of {}: {error}", folder.display())
        });
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | "node_modules" | ".git") {
                file_names(&path, names);
            }
        } else {
            names.insert(name);
        }
    }
}

/// The words of `text` that look like a path or a file name: runs of path characters,
/// cut at anything else (backticks, brackets, spaces).
fn path_like_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|character: char| {
        !(character.is_ascii_alphanumeric() || matches!(character, '/' | '.' | '_' | '-'))
    })
    .map(|word| word.trim_end_matches(['.', '/']))
    .filter(|word| !word.is_empty())
}

/// The targets of markdown links `[text](target)` that name a file relative to the
/// document: not web addresses, not anchors; a `#fragment` is cut off.
fn relative_link_targets(text: &str) -> impl Iterator<Item = &str> {
    text.split("](").skip(1).filter_map(|rest| {
        let target = rest.split(')').next()?.split('#').next()?.trim();
        (!target.is_empty() && !target.contains("://") && !target.starts_with("mailto:"))
            .then_some(target)
    })
}

const TOP_LEVEL: [&str; 5] = ["crates/", "docs/", "fuzz/", "tests/", ".ci/"];
/// Folders that tools make when they run, cited by the docs as where to look.
const GENERATED: [&str; 3] = ["fuzz/corpus", "fuzz/artifacts", "target"];

#[test]
fn the_documentation_cites_only_files_that_exist() {
    let root = repository_root();
    let mut names = BTreeSet::new();
    file_names(&root, &mut names);
    let mut missing = Vec::new();
    let mut checked = 0;
    for document in documents(&root) {
        let text = std::fs::read_to_string(&document).expect("a readable document");
        let shown = document
            .strip_prefix(&root)
            .unwrap_or(&document)
            .display()
            .to_string();
        for word in path_like_words(&text) {
            if TOP_LEVEL.iter().any(|prefix| word.starts_with(prefix)) {
                let generated = GENERATED.iter().any(|folder| word.starts_with(folder));
                if !generated {
                    checked += 1;
                    if !root.join(word).exists() {
                        missing.push(format!("{shown}: {word}"));
                    }
                }
            } else if !word.contains('/') && word.ends_with(".rs") {
                checked += 1;
                if !names.contains(word) {
                    missing.push(format!("{shown}: {word}"));
                }
            }
        }
    }
    // Markdown links to files beside the document (`[JSON](simulation/run.json)`), which
    // the words above do not cover: resolved from the document's folder.
    let mut links = 0;
    for document in documents(&root) {
        let text = std::fs::read_to_string(&document).expect("a readable document");
        let folder = document.parent().unwrap_or(&root);
        for target in relative_link_targets(&text) {
            links += 1;
            if !folder.join(target).exists() {
                missing.push(format!("{}: link {target}", document.display()));
            }
        }
    }
    assert!(links > 10, "only {links} relative links were checked");
    // The documents cite over 300 files: a check that found few has skipped them.
    assert!(checked > 200, "only {checked} citations were checked");
    assert!(
        missing.is_empty(),
        "the documentation cites files that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_check_sees_a_missing_file() {
    let words: Vec<&str> =
        path_like_words("see `crates/p2p/src/manager.rs`, and [x](docs/API.md).").collect();
    assert!(words.contains(&"crates/p2p/src/manager.rs"));
    assert!(words.contains(&"docs/API.md"));
    assert!(!repository_root().join("crates/p2p/src/manager.rs").exists());
    let links: Vec<&str> = relative_link_targets(
        "[plot](simulation/a.svg), [web](https://example.com), [here](#figures), [x](../README.md#start)",
    )
    .collect();
    assert_eq!(links, vec!["simulation/a.svg", "../README.md"]);
}
