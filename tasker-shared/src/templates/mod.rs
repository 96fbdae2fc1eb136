//! Task templates: YAML files describing a DAG of steps, validated, loaded from a directory and
//! registered in the database.

mod error;
mod load;
mod model;
mod register;
mod validate;

pub use error::TemplateError;
pub use load::{load_dir, parse_template};
pub use model::{RetryPolicy, StepTemplate, TaskTemplate};
pub use register::{find_template, list_templates, register_template, RegisteredTemplate};
pub use validate::validate;
