//! What a worker or the health checker runs with: the validated
//! configuration ([`crate::config::Config`], routes compiled, servers
//! resolved) and the generation it belongs to. Workers only read it.

use crate::config::Config;
pub use crate::config::{Action, HashKey, UpstreamProtocol};

pub struct Runtime {
    /// The configuration generation (reloads), for metrics.
    pub generation: u64,
    config: Config,
}

impl Runtime {
    /// Generation 1 of `config`; the master sets the generation it forks.
    pub fn new(config: &Config) -> Runtime {
        Runtime {
            generation: 1,
            config: config.clone(),
        }
    }
}

/// The data path reads the configuration's fields through the runtime
/// (`rt.upstreams[u]`, `rt.timeouts.connect`): one configuration type, held
/// by value, so a field is as close as it was in the compiled copy.
impl std::ops::Deref for Runtime {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}
