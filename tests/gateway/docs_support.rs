//! Helpers of the documentation tests (`docs_drift.rs`, `openapi.rs`).

use std::path::{Path, PathBuf};

/// A file of the repository.
pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The text of a repository file.
pub fn read(path: &str) -> String {
    let p = repo_file(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every file under `dir` (recursively) whose name ends in `.{ext}`, sorted.
pub fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The words written in backticks in `text` (`` `a` ``, `` `b.c` `` → `a`, `b.c`).
pub fn backticked(text: &str) -> std::collections::BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Fail with every missing item listed, one per line, under `what`.
pub fn assert_none_missing(what: &str, missing: &[String]) {
    assert!(
        missing.is_empty(),
        "{what}: {} missing:\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}
