//! One module per lifecycle responsibility.

pub mod operator;
pub mod result_processor;
pub mod step_enqueuer;
pub mod task_finalizer;
pub mod task_initializer;

#[cfg(test)]
mod test_support;
