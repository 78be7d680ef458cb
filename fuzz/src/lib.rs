//! Helpers of the fuzz targets (`fuzz_targets/`).

pub mod engine_file;

/// Whether `HB_FUZZ_STRICT` is set: then the targets fail on the known findings they
/// otherwise tolerate so as to go on finding others (`fuzz/regressions/README.md`).
pub fn strict() -> bool {
    std::env::var_os("HB_FUZZ_STRICT").is_some_and(|v| !v.is_empty() && v != "0")
}
