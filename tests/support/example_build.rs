//! Building an example of this package from a test: the binary `cargo test` built beside the
//! test, with the packages and features of the run (nothing compiled twice).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary of example `name`, built with the features of the run that built this test
/// (`HB_EXAMPLE_FEATURES`, as scripts/test-all sets them), else with `default_features`.
pub fn example_binary(name: &str, default_features: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("this test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let release = profile_dir.ends_with("release").then_some("--release");
    // The packages and features of the run that built this test, when it says them
    // (scripts/test-all: `--workspace --all-features`), so the example shares its build
    // instead of compiling the Temporal stack again with other features.
    let features =
        std::env::var("HB_EXAMPLE_FEATURES").unwrap_or_else(|_| default_features.to_owned());
    let mut cargo = Command::new(env!("CARGO"));
    // What cargo set for this test (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, OUT_DIR, ...) is not
    // for the nested build: build scripts that watch them (ring's) would run again, compiling
    // the Temporal stack here, and again in the next plain build.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_for_test = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
            || matches!(
                key,
                "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR" | "OUT_DIR"
            );
        if set_for_test {
            cargo.env_remove(key);
        }
    }
    let status = cargo
        .args(["build", "--example", name])
        .args(features.split_whitespace())
        .args(release)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --example {name} failed");
    profile_dir.join("examples").join(name)
}
