//! The running configuration, swapped atomically on reload.
//!
//! Owns: pairing a validated `Config` with the `Router` compiled from it, so a
//! request sees one consistent snapshot from start to end.
//! Never: validates; only configs that passed `Config::load` get here.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::router::Router;

/// One consistent configuration snapshot.
#[derive(Debug)]
pub struct Live {
    pub config: Config,
    pub router: Router,
}

impl Live {
    pub fn new(config: Config) -> Live {
        let router = Router::new(&config.routes);
        Live { config, router }
    }
}

/// Shared, atomically replaceable snapshot.
pub type Shared = Arc<ArcSwap<Live>>;

pub fn shared(config: Config) -> Shared {
    Arc::new(ArcSwap::from_pointee(Live::new(config)))
}
