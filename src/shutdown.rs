//! Shutdown signal.
