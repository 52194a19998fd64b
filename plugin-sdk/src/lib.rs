//! # hookrouter plugin SDK
//!
//! Write [hookrouter](https://example.invalid/hookrouter) plugins in Rust. A plugin
//! is a function from one [`Event`] to a list of [`Action`]s; hookrouter calls it
//! once per delivery in a fresh WebAssembly sandbox and performs the actions itself
//! (plugins never do I/O: they decide, the host acts).
//!
//! One import and one macro:
//!
//! ```
//! use hookrouter_plugin_sdk::prelude::*;
//!
//! #[derive(Deserialize)]
//! struct Payment {
//!     amount: f64,
//! }
//!
//! fn handle(event: Event) -> Result<Vec<Action>> {
//!     let payment: Payment = event.json_at("/data")?;
//!     let threshold: f64 = config("threshold").unwrap_or_default().parse().unwrap_or(1000.0);
//!     log::info!("payment of {} on {}", payment.amount, event.id);
//!     if payment.amount <= threshold {
//!         return Ok(vec![]);
//!     }
//!     Ok(vec![
//!         Action::forward("http://127.0.0.1:9000/audit")
//!             .header("content-type", "application/json")
//!             .json(&json!({ "event": event.id, "amount": payment.amount })),
//!         Action::emit("large_payment", &json!({ "amount": payment.amount })),
//!     ])
//! }
//!
//! export_handler!(handle);
//!
//! // Natively (`cargo test`), the same handler runs with no wasm at all:
//! let _guard = testing::set_config([("threshold", "100")]);
//! let event = TestEvent::new("payment_created")
//!     .data(&json!({ "data": { "amount": 250.0 } }))
//!     .build();
//! let actions = handle(event).unwrap();
//! assert_eq!(actions.len(), 2);
//! ```
//!
//! Deriving `Deserialize`/`Serialize` needs `serde = { version = "1", features =
//! ["derive"] }` in the plugin's `Cargo.toml` (the derive names the `serde` crate).
//!
//! Build the plugin as a component with `cargo build --target wasm32-wasip2
//! --release` (crate type `cdylib`) and drop the `.wasm` into the router's plugin
//! folder. The WIT contract is `wit/plugin.wit` in this crate.

#![deny(missing_docs)]

// The generated bindings name this crate by its path, from inside it too.
#[cfg(target_arch = "wasm32")]
extern crate self as hookrouter_plugin_sdk;

mod action;
mod error;
mod event;
mod host;
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;

pub use action::Action;
pub use error::{Error, Result};
pub use event::Event;
pub use host::{config, log};
pub use testing::TestEvent;

/// Everything a plugin needs, in one import.
pub mod prelude {
    pub use crate::testing::{self, TestEvent};
    pub use crate::{Action, Error, Event, Result, config, export_handler, log};
    pub use serde::{Deserialize, Serialize};
    pub use serde_json::{Value, json};
}

/// Re-exported so that plugins need no direct dependency on them.
pub use serde;
/// Re-exported so that plugins need no direct dependency on them.
pub use serde_json;

/// Exports `handler` (a `fn(Event) -> Result<Vec<Action>>`) as the plugin's
/// `handle` function. Use it once, at the top level of the plugin crate.
///
/// Natively it only checks the handler's type, so the crate still builds and
/// tests on the host.
#[macro_export]
macro_rules! export_handler {
    ($handler:path) => {
        const _: $crate::guest_support::Handler = $handler;

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::guest::{Guest, WitAction, WitEvent};
            struct HookrouterPlugin;
            impl Guest for HookrouterPlugin {
                fn handle(event: WitEvent) -> ::std::result::Result<Vec<WitAction>, String> {
                    $crate::guest::call(event, $handler)
                }
            }
            use $crate::guest::bindings as wit;
    $crate::guest::__export_plugin!(HookrouterPlugin with_types_in wit);
        };
    };
}

#[doc(hidden)]
pub mod guest_support {
    /// The type every handler has.
    pub type Handler = fn(crate::Event) -> crate::Result<Vec<crate::Action>>;
}
