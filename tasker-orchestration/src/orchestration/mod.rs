//! The orchestration core: lifecycle operations and the loop that drives them.

pub mod core;
pub mod lifecycle;
