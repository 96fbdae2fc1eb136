//! Typed HTTP client for the Tasker REST API.
