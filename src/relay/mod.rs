//! The carbon relay: route carbon line and pickle input to destination
//! clusters with carbon's own placement.

pub mod hashing;
