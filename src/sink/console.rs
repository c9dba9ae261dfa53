//! console sink

/// Console sink settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleConfig {
    pub format: ConsoleFormat,
}

/// How the console prints a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleFormat {
    /// Graphite plaintext lines (`name value timestamp`), one per value.
    Text,
    /// One JSON object per series.
    Json,
}
