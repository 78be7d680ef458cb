//! `#[activity]`: options table (`options`) → arguments (`args`, `values`) → model (`model`,
//! `body`) → expansion.

mod args;
mod body;
mod expand;
mod model;
mod options;
mod values;

pub(crate) use expand::expand;
pub(crate) use options::{option_rows, retry_rows};
