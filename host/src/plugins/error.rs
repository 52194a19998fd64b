//! `PluginError`: every way loading or running a plugin can fail.
//!
//! Owns: the variants the dispatcher decides on (retry, dead-letter, wait for the
//! plugin) and their one-line, lower-case messages naming the plugin and the event.
//! Never: carries wasmtime types (callers above the runtime never see them).

use std::time::Duration;

/// A plugin failed to load or to handle an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// No plugin of that name is loaded.
    #[error("plugin {plugin} is not loaded")]
    NotFound {
        /// The plugin's name.
        plugin: String,
    },
    /// The file is not a usable plugin: not wasm, truncated, neither ABI, a missing
    /// or mistyped export, an import the host does not provide.
    #[error("plugin {plugin} is invalid: {reason}")]
    Invalid {
        /// The plugin's name.
        plugin: String,
        /// What is wrong.
        reason: String,
    },
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access...).
    #[error("plugin {plugin} trapped on event {event_id}: {message}")]
    Trap {
        /// The plugin's name.
        plugin: String,
        /// The event being handled.
        event_id: String,
        /// The trap, in one line.
        message: String,
    },
    /// The invocation ran past its deadline and was interrupted.
    #[error("plugin {plugin} timed out after {} ms on event {event_id}", .timeout.as_millis())]
    Timeout {
        /// The plugin's name.
        plugin: String,
        /// The event being handled.
        event_id: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// The guest needed more memory than its cap.
    #[error("plugin {plugin} exceeded its memory limit of {} MiB on event {event_id}", .limit_bytes >> 20)]
    MemoryLimit {
        /// The plugin's name.
        plugin: String,
        /// The event being handled.
        event_id: String,
        /// The cap.
        limit_bytes: usize,
    },
    /// The guest wrote more than allowed to stdout, stderr or the log.
    #[error("plugin {plugin} wrote more than {limit_bytes} bytes of output on event {event_id}")]
    OutputLimit {
        /// The plugin's name.
        plugin: String,
        /// The event being handled.
        event_id: String,
        /// The cap.
        limit_bytes: usize,
    },
    /// The guest reported failure: `handle` returned `err`, or the command exited
    /// with a non-zero status.
    #[error("plugin {plugin} failed on event {event_id}: {message}")]
    Guest {
        /// The plugin's name.
        plugin: String,
        /// The event being handled.
        event_id: String,
        /// The guest's message (or exit status).
        message: String,
    },
    /// The guest succeeded but its actions are not acceptable (bad JSON, bad URL,
    /// empty event type, too many actions).
    #[error("plugin {plugin} returned invalid output on event {event_id}: {reason}")]
    BadOutput {
        /// The plugin's name.
        plugin: String,
        /// The event being handled.
        event_id: String,
        /// What is wrong.
        reason: String,
    },
    /// The run asked for more emits than its budget allows: too many in one run,
    /// an emitted event's data too large, or an emit past the hop limit. The run
    /// has no effects, and a retry would only ask again: it is dead-lettered at once.
    #[error("plugin {plugin} exceeded its emit budget on event {event_id}: {reason} (not retried)")]
    EmitBudget {
        /// The plugin's name.
        plugin: String,
        /// The event being handled.
        event_id: String,
        /// Which cap, and by how much.
        reason: String,
    },
    /// The host could not set up the instance (e.g. the pool is misconfigured).
    #[error("plugin {plugin} could not start on event {event_id}: {message}")]
    Internal {
        /// The plugin's name.
        plugin: String,
        /// The event being handled.
        event_id: String,
        /// The host-side failure.
        message: String,
    },
}

impl PluginError {
    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::NotFound { plugin }
            | PluginError::Invalid { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::Timeout { plugin, .. }
            | PluginError::MemoryLimit { plugin, .. }
            | PluginError::OutputLimit { plugin, .. }
            | PluginError::Guest { plugin, .. }
            | PluginError::BadOutput { plugin, .. }
            | PluginError::EmitBudget { plugin, .. }
            | PluginError::Internal { plugin, .. } => plugin,
        }
    }

    /// A failure of one invocation: count the attempt and retry with backoff
    /// (dead-letter after the last attempt). An exceeded emit budget is not: the
    /// same run would exceed it again, so its delivery is dead at once.
    pub fn is_retryable(&self) -> bool {
        !self.is_unavailable() && !matches!(self, PluginError::EmitBudget { .. })
    }

    /// The plugin itself is absent or unloadable: the delivery should wait for a
    /// good version to appear, without counting an attempt.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            PluginError::NotFound { .. } | PluginError::Invalid { .. }
        )
    }

    /// A short, stable name of the variant, for metrics and the admin API.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::NotFound { .. } => "not_found",
            PluginError::Invalid { .. } => "invalid",
            PluginError::Trap { .. } => "trap",
            PluginError::Timeout { .. } => "timeout",
            PluginError::MemoryLimit { .. } => "memory_limit",
            PluginError::OutputLimit { .. } => "output_limit",
            PluginError::Guest { .. } => "guest",
            PluginError::BadOutput { .. } => "bad_output",
            PluginError::EmitBudget { .. } => "emit_budget",
            PluginError::Internal { .. } => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_plugin_and_event() {
        let e = PluginError::Timeout {
            plugin: "slow".into(),
            event_id: "ev1".into(),
            timeout: Duration::from_millis(250),
        };
        assert_eq!(
            e.to_string(),
            "plugin slow timed out after 250 ms on event ev1"
        );
        assert!(e.is_retryable());
        let e = PluginError::MemoryLimit {
            plugin: "big".into(),
            event_id: "ev2".into(),
            limit_bytes: 64 << 20,
        };
        assert_eq!(
            e.to_string(),
            "plugin big exceeded its memory limit of 64 MiB on event ev2"
        );
        let e = PluginError::NotFound {
            plugin: "gone".into(),
        };
        assert!(e.is_unavailable() && !e.is_retryable());
        assert_eq!(e.plugin(), "gone");
        let e = PluginError::EmitBudget {
            plugin: "bomb".into(),
            event_id: "ev3".into(),
            reason: "50 emits in one run, more than plugins.max_emits_per_run (20)".into(),
        };
        assert!(!e.is_retryable() && !e.is_unavailable());
        assert_eq!(e.kind(), "emit_budget");
        assert_eq!(
            e.to_string(),
            "plugin bomb exceeded its emit budget on event ev3: 50 emits in one run, more than plugins.max_emits_per_run (20) (not retried)"
        );
    }
}
