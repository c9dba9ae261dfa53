//! The statsd load generator.
fn main() {}
