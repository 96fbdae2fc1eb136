//! The API's bearer token as it is kept on disk: the first line of a file that the server
//! (`--auth-token-file`) and its clients (`tasker task --auth-token-file`) read alike.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a token file cannot be used; each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the API token file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the API token file {path} is empty: put the token on its first line")]
    Empty { path: PathBuf },
    #[error(
        "the API token in {path} has characters an HTTP header cannot carry: use printable ASCII without spaces (for example `openssl rand -hex 32`)"
    )]
    NotHeaderSafe { path: PathBuf },
}

/// A bearer token. Its `Debug` and `Display` never show the secret, so it cannot reach a log
/// by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// The token on the first line of `path` (surrounding whitespace ignored).
    pub fn from_file(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            return Err(TokenFileError::Empty {
                path: path.to_owned(),
            });
        }
        Self::new(token).ok_or_else(|| TokenFileError::NotHeaderSafe {
            path: path.to_owned(),
        })
    }

    /// A token given directly: `None` unless it is non-empty printable ASCII without spaces,
    /// what an HTTP header carries as is.
    pub fn new(secret: &str) -> Option<Self> {
        (!secret.is_empty() && secret.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Self(secret.to_owned()))
    }

    /// The secret itself, for the `Authorization` header or a comparison.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn the_first_line_trimmed_is_the_token() {
        let file = file_with("  s3cret-token \nsecond line\n");
        let token = ApiToken::from_file(file.path()).unwrap();
        assert_eq!(token.secret(), "s3cret-token");
        assert_eq!(format!("{token:?}"), "ApiToken(<redacted>)");
    }

    #[test]
    fn empty_unsafe_and_missing_files_are_refused_naming_the_file() {
        let empty = file_with("\n\n");
        let err = ApiToken::from_file(empty.path()).unwrap_err();
        assert!(matches!(err, TokenFileError::Empty { .. }));
        assert!(err
            .to_string()
            .contains(&empty.path().display().to_string()));

        let spaced = file_with("two words\n");
        assert!(matches!(
            ApiToken::from_file(spaced.path()).unwrap_err(),
            TokenFileError::NotHeaderSafe { .. }
        ));

        let missing = Path::new("/nonexistent/tasker-token");
        let err = ApiToken::from_file(missing).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/tasker-token"),
            "{err}"
        );
    }
}
