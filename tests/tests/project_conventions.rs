//! Checks that keep the project's promises to newcomers and to CI in agreement: the README's
//! two quick-start commands are the ones `.ci/run` runs, and every crate opens with a paragraph
//! on its role and takes the workspace lints.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

const QUICK_START: &str = "scripts/bootstrap.sh && cargo run --release -p ruang -- demo";
const TEST_COMMAND: &str = "cargo nextest run --workspace && cargo test --workspace --doc";

#[test]
fn readme_quick_start_is_what_ci_runs() {
    let readme = read(&root().join("README.md"));
    assert!(
        readme.contains(QUICK_START),
        "the README's quick start must be `{QUICK_START}`"
    );
    assert!(
        readme.contains(TEST_COMMAND),
        "the README must give the test command `{TEST_COMMAND}`"
    );
    let ci = read(&root().join(".ci/run"));
    assert!(
        ci.contains("scripts/bootstrap.sh"),
        ".ci/run must install the build dependencies"
    );
    assert!(
        ci.contains(TEST_COMMAND),
        ".ci/run must run the README's test command"
    );
    assert!(ci.contains("cargo clippy --workspace --all-targets -- -D warnings"));
    assert!(ci.contains("cargo fmt --all -- --check"));
    assert!(ci.contains("check-layering.sh"));
}

fn crates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    out.sort();
    out
}

#[test]
fn every_crate_opens_with_its_role_and_takes_the_workspace_lints() {
    let crates = crates();
    assert!(
        crates.len() >= 7,
        "expected the crates of DESIGN.md §1, found {crates:?}"
    );
    for dir in crates {
        let manifest = read(&dir.join("Cargo.toml"));
        assert!(
            manifest.contains("[lints]\nworkspace = true"),
            "{} must take the workspace lints",
            dir.display()
        );
        let entry = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists());
        let entry = entry.unwrap_or_else(|| panic!("{} has no lib.rs or main.rs", dir.display()));
        let first = read(&entry).lines().next().unwrap_or_default().to_string();
        assert!(
            first.starts_with("//!"),
            "{} must open with a `//!` paragraph on its role",
            entry.display()
        );
    }
}
