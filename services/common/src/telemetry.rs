//! `tracing` setup: pretty lines for development, JSON for production. The filter
//! comes from `RUST_LOG` (default `info`).

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Calling it twice (as tests may) is harmless.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already set, which is fine.
    let _ = match config.log_format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// For tests: logs only when `TEST_LOG=1`, so test output stays quiet otherwise.
pub fn init_for_tests() {
    if std::env::var_os("TEST_LOG").is_some_and(|v| v == "1") {
        init(&LogConfig {
            log_format: LogFormat::Pretty,
        });
    }
}
