//! Tasker worker: queue consumer, step handlers and result submission.
