//! What the host offers the plugin: its config entries and the router's log.
//!
//! In a wasm build these call the host; natively (unit tests) they read the
//! thread-local map set by [`crate::testing::set_config`] and print to stderr.

/// The plugin's config entry `key` (`[plugin.NAME] config` in `router.toml`, or
/// `--set key=value` with `hookrouter run-plugin`).
pub fn config(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::guest::bindings::hookrouter::plugin::host::config(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::config_value(key)
    }
}

/// Logging into the router's log, tagged with the plugin's name and the event id.
///
/// ```
/// use hookrouter_plugin_sdk::prelude::*;
/// log::info!("seen {} events", 3);
/// log::write(log::Level::Debug, "plain text");
/// ```
pub mod log {
    pub use crate::{
        __hookrouter_debug as debug, __hookrouter_error as error, __hookrouter_info as info,
        __hookrouter_trace as trace, __hookrouter_warn as warn,
    };

    /// Severity of a log line.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Level {
        /// Very detailed.
        Trace,
        /// Detailed.
        Debug,
        /// Normal.
        Info,
        /// Something looks wrong.
        Warn,
        /// Something failed.
        Error,
    }

    /// Writes one log line.
    pub fn write(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        {
            use crate::guest::bindings::hookrouter::plugin::host::{self, Level as L};
            let level = match level {
                Level::Trace => L::Trace,
                Level::Debug => L::Debug,
                Level::Info => L::Info,
                Level::Warn => L::Warn,
                Level::Error => L::Error,
            };
            host::log(level, message);
        }
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("[{level:?}] {message}");
    }
}

/// Logs a `format!`-style line at level `Trace`; use it as `log::trace!`.
#[macro_export]
#[doc(hidden)]
macro_rules! __hookrouter_trace {
    ($($arg:tt)*) => {
        $crate::log::write($crate::log::Level::Trace, &::std::format!($($arg)*))
    };
}

/// Logs a `format!`-style line at level `Debug`; use it as `log::debug!`.
#[macro_export]
#[doc(hidden)]
macro_rules! __hookrouter_debug {
    ($($arg:tt)*) => {
        $crate::log::write($crate::log::Level::Debug, &::std::format!($($arg)*))
    };
}

/// Logs a `format!`-style line at level `Info`; use it as `log::info!`.
#[macro_export]
#[doc(hidden)]
macro_rules! __hookrouter_info {
    ($($arg:tt)*) => {
        $crate::log::write($crate::log::Level::Info, &::std::format!($($arg)*))
    };
}

/// Logs a `format!`-style line at level `Warn`; use it as `log::warn!`.
#[macro_export]
#[doc(hidden)]
macro_rules! __hookrouter_warn {
    ($($arg:tt)*) => {
        $crate::log::write($crate::log::Level::Warn, &::std::format!($($arg)*))
    };
}

/// Logs a `format!`-style line at level `Error`; use it as `log::error!`.
#[macro_export]
#[doc(hidden)]
macro_rules! __hookrouter_error {
    ($($arg:tt)*) => {
        $crate::log::write($crate::log::Level::Error, &::std::format!($($arg)*))
    };
}
