//! The one integration test binary: real servers, real sockets, ephemeral ports.

mod admin;
mod cli;
mod differential;
mod http;
mod prometheus;
mod statsd;
mod support;
