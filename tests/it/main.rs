//! The one integration test binary: real servers, real sockets, ephemeral ports.

mod cli;
mod differential;
mod statsd;
mod support;
