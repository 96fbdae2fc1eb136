//! The data layer against a real PostgreSQL: each test gets its own database on the throwaway
//! cluster (or on the server `DATABASE_URL` names).

mod connections;
mod execution_context;
mod fixtures;
mod local_postgres;
mod plans;
mod queues;
mod readiness;
mod schema;
mod templates;
mod transitions;
mod transitive_dependencies;
