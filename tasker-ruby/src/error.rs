//! What loading Ruby handlers can fail with.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RubyError {
    #[error("cannot read the Ruby handler directory {}: {source}; pass an existing directory", dir.display())]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the Ruby handler directory {} holds no *.rb files; put the handler files there", dir.display())]
    NoFiles { dir: PathBuf },
    #[error("{}{}: {message}; fix the file or move it out of the handler directory", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Load {
        file: PathBuf,
        line: Option<u32>,
        message: String,
    },
    #[error("the embedded Ruby VM is not running: {0}")]
    Vm(String),
}
