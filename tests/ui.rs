//! Compile tests for `#[activity]` and `#[derive(Checkpoint)]` (trybuild).
//!
//! `tests/ui/<macro>/pass/*.rs` must compile (and their `main` must run without panicking);
//! `tests/ui/<macro>/fail/*.rs` must fail to compile with exactly the errors in the `.stderr`
//! file beside them.
//!
//! Run with `cargo test --no-default-features --test ui` (as `scripts/test-all` does: the
//! macros need no engine, so trybuild compiles no SQLite). After changing a message on purpose,
//! regenerate the snapshots with
//!
//! ```text
//! TRYBUILD=overwrite cargo test --no-default-features --test ui
//! ```
//!
//! and review the `.stderr` diffs before committing them. Snapshots depend on the compiler's
//! wording, so regenerate them when the toolchain changes.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/activity/pass/*.rs");
    t.compile_fail("tests/ui/activity/fail/*.rs");
    t.pass("tests/ui/checkpoint/pass/*.rs");
    t.compile_fail("tests/ui/checkpoint/fail/*.rs");
}
