//! hb workspace package: examples and tests live beside this.
