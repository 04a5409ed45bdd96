//! `[dev]`: switches for development only.

use serde::Deserialize;

/// Development-only switches. Never set them in production; the gateway warns loudly.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevConfig {
    /// Skip authorization entirely: every routed request is forwarded without a session.
    #[serde(default)]
    pub allow_all: bool,
}
