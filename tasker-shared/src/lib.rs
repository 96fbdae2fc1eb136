//! Tasker data layer.
