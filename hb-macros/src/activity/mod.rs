//! `#[activity]`: arguments (`args`, `values`) → model → expansion.

mod args;
mod expand;
mod model;
mod values;

pub(crate) use expand::{expand, fallback};
