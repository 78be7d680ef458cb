//! Helpers of the fuzz targets (`fuzz_targets/`).

pub mod engine_file;
pub mod floats;

pub use floats::same_but_float_drift;
