//! The README's "Layout" lists every tracked file and folder, and nothing
//! else: a file added, moved or removed without its line fails here.

// In a test, a failed assumption should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The first token of each line of the code block under `## Layout`.
fn listed() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let section = readme
        .split_once("\n## Layout\n")
        .expect("README has a Layout section")
        .1;
    let block = section
        .split_once("```\n")
        .expect("the Layout section has a code block")
        .1
        .split_once("```")
        .expect("the code block ends")
        .0;
    block
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn tracked() -> BTreeSet<String> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(ROOT)
        .output()
        .expect("git runs (the repository is a git clone)");
    assert!(out.status.success(), "git ls-files failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every folder that holds a tracked file, at any depth, with a trailing `/`.
fn folders(files: &BTreeSet<String>) -> BTreeSet<String> {
    files
        .iter()
        .flat_map(|f| {
            let parts: Vec<&str> = f.split('/').collect();
            (1..parts.len())
                .map(|n| format!("{}/", parts[..n].join("/")))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn readme_layout_lists_every_tracked_file_and_folder_and_nothing_else() {
    let entries = listed();
    let unique: BTreeSet<String> = entries.iter().cloned().collect();
    assert_eq!(unique.len(), entries.len(), "an entry is listed twice");
    let files = tracked();
    let expected: BTreeSet<String> = files.union(&folders(&files)).cloned().collect();
    let missing: Vec<_> = expected.difference(&unique).collect();
    let stale: Vec<_> = unique.difference(&expected).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README Layout is out of date.\n  not listed: {missing:?}\n  listed but not in git: {stale:?}"
    );
}
