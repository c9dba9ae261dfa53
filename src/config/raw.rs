//! The serde shape of statsyard.toml; every field's `///` doc is its user doc.
