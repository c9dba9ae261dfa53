//! The reference statsd's `config.js` → [`Config`](super::Config).

use super::{Config, ConfigError};

/// Parse and translate a `config.js` text; `file` names it in errors.
pub fn from_str(text: &str, file: &str) -> Result<Config, ConfigError> {
    let _ = (text, file);
    todo!("config.js import")
}
