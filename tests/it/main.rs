//! The one integration test binary: real servers, real sockets, ephemeral ports.

mod admin;
mod carbon_cache;
mod cli;
mod clients;
mod deploy;
mod differential;
mod events;
mod exporter_parity;
mod forward;
mod fuzz_corpus;
mod host;
mod hostile;
mod http;
#[cfg(feature = "kafka")]
mod kafka;
mod limits;
mod liveness;
mod output_surface;
mod persist;
mod prometheus;
mod props;
mod reference_tests;
mod relay;
mod relay_oracle;
mod reload;
mod slow_sink;
mod spool;
mod statsd;
mod status_page;
mod stores;
mod supervise;
mod support;
mod tls;
