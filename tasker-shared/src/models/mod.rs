//! Rows and the writes that create them.

mod task_graph;

pub use task_graph::{insert_task_graph, CreatedTask, NewTask};
