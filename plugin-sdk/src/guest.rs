//! The wasm side: WIT bindings and the glue `export_handler!` expands to.
//! Plugin authors never use this module directly.

#![allow(missing_docs)]

pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "hookrouter_plugin_sdk::guest::bindings",
        runtime_path: "hookrouter_plugin_sdk::guest::wit_bindgen::rt",
    });
}

pub use bindings::__export_plugin;
pub use bindings::Guest;
pub use bindings::hookrouter::plugin::types::{
    Action as WitAction, Emitted, Event as WitEvent, ForwardRequest,
};
pub use wit_bindgen;

use crate::{Action, Event, Result};

/// Converts the WIT event, calls the handler, converts its actions back.
pub fn call(
    event: WitEvent,
    handler: fn(Event) -> Result<Vec<Action>>,
) -> std::result::Result<Vec<WitAction>, String> {
    let event = Event {
        id: event.id,
        event_type: event.event_type,
        source: event.source,
        received_at: event.received_at,
        attempt: event.attempt,
        headers: event.headers,
        data: event.data,
    };
    let actions = handler(event).map_err(|e| e.to_string())?;
    Ok(actions
        .into_iter()
        .map(|action| match action {
            Action::Forward { url, headers, body } => {
                WitAction::Forward(ForwardRequest { url, headers, body })
            }
            Action::Emit { event_type, data } => WitAction::Emit(Emitted { event_type, data }),
        })
        .collect())
}
