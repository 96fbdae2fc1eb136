//! Tasker orchestration: task lifecycle, the orchestration loop and the REST API.
