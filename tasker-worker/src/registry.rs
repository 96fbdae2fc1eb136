//! Handlers by name.

use std::collections::HashMap;
use std::sync::Arc;

use crate::handler::StepHandler;

/// The handlers a worker can run, keyed by the template's handler name.
#[derive(Default, Clone)]
pub struct HandlerRegistry {
    handlers: HashMap<String, Arc<dyn StepHandler>>,
}

impl HandlerRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the handler for `name`.
    pub fn register(&mut self, name: &str, handler: impl StepHandler) {
        self.handlers.insert(name.to_string(), Arc::new(handler));
    }

    /// The handler for `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn StepHandler>> {
        self.handlers.get(name).cloned()
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.handlers.keys().cloned().collect();
        names.sort();
        names
    }
}
