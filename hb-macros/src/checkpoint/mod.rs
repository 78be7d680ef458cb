//! `#[derive(Checkpoint)]`: attributes → model → expansion.

mod attr;
mod expand;
mod model;

pub(crate) use expand::expand;
