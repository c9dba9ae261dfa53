//! The one integration test binary: real servers, real sockets, ephemeral ports.

mod carbon_cache;
mod cli;
mod differential;
mod relay;
mod relay_oracle;
mod statsd;
mod support;
