//! Durable queues in PostgreSQL with LISTEN/NOTIFY wake-ups.
//!
//! Hand-rolled rather than built on the `pgmq` crate, for three reasons: the queue tables and
//! functions live in this crate's schema (`migrations/`, `functions/30_queues.sql`), so
//! `tasker migrate` installs everything (pgmq installs its SQL through its own installer,
//! outside any migration set); every statement is static, so sqlx prepares it once per
//! connection (pgmq's functions build their SQL with `format` and `EXECUTE` on every call); and
//! a send raises its notification inside the caller's transaction, next to the state change it
//! announces. The semantics match pgmq's: visibility timeout, read count, delete, archive.

mod listener;
mod messages;
mod queue;

pub use listener::{QueueListener, Wake};
pub use messages::{
    namespace_queue_name, queue_namespace, StepMessage, StepOutcome, StepResultMessage,
    RESULTS_QUEUE, TASKS_READY_CHANNEL, TASK_FINISHED_CHANNEL,
};
pub use queue::{Queue, QueueMessage};
