//! One module per lifecycle responsibility.

pub mod task_initializer;
