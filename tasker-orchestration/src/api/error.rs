//! API errors and the extractors that report bad input as JSON.
//!
//! Every error response has the body `{"error": {"code": "...", "message": "..."}}`
//! ([`tasker_client::ErrorBody`]). axum's own extractors answer rejections with plain text, so
//! the handlers use [`ApiJson`], [`ApiQuery`] and [`ApiPath`], which wrap them and turn their
//! rejections into [`ApiError`]s.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use tasker_client::{error_codes, ErrorBody, ErrorDetail};
use tasker_shared::error::display_chain;
use tasker_shared::TaskerError;

use crate::error::OrchestrationError;

/// An error answer: status, stable code and a message saying what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn task_not_found(task_uuid: uuid::Uuid) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            error_codes::TASK_NOT_FOUND,
            format!("no task has id {task_uuid}"),
        )
    }

    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error_codes::INVALID_QUERY, message)
    }

    /// A data-layer failure: 503 when the database cannot be reached, 500 otherwise. The full
    /// cause chain goes to the log; the response carries only the top-level description, which
    /// names the operation but no database internals.
    pub fn data(error: &TaskerError) -> Self {
        let unavailable = matches!(
            error,
            TaskerError::Database { source, .. } if is_connection_failure(source)
        );
        if unavailable {
            tracing::warn!(error = %display_chain(error), "database unavailable");
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                error_codes::DATABASE_UNAVAILABLE,
                format!("{error}: the database is unavailable"),
            )
        } else {
            tracing::error!(error = %display_chain(error), "request failed");
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                error_codes::INTERNAL,
                format!("{error}; the server log has the details"),
            )
        }
    }
}

fn is_connection_failure(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<OrchestrationError> for ApiError {
    fn from(error: OrchestrationError) -> Self {
        match &error {
            OrchestrationError::UnknownTemplate { .. } => Self::new(
                StatusCode::NOT_FOUND,
                error_codes::TEMPLATE_NOT_FOUND,
                error.to_string(),
            ),
            OrchestrationError::InvalidRequest(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                error_codes::INVALID_REQUEST,
                error.to_string(),
            ),
            OrchestrationError::Data(data) => Self::data(data),
            // variants added to the orchestration error later are server-side failures
            #[allow(unreachable_patterns)]
            _ => {
                tracing::error!(error = %display_chain(&error), "request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    error_codes::INTERNAL,
                    format!("{error}; the server log has the details"),
                )
            }
        }
    }
}

impl From<TaskerError> for ApiError {
    fn from(error: TaskerError) -> Self {
        Self::data(&error)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let (status, code) = match &rejection {
            JsonRejection::JsonSyntaxError(_) => {
                (StatusCode::BAD_REQUEST, error_codes::MALFORMED_JSON)
            }
            JsonRejection::JsonDataError(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, error_codes::INVALID_BODY)
            }
            JsonRejection::MissingJsonContentType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                error_codes::UNSUPPORTED_MEDIA_TYPE,
            ),
            // reading the body failed (too large, connection dropped)
            _ => (rejection.status(), error_codes::MALFORMED_JSON),
        };
        Self::new(status, code, rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid_query(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(
            rejection.status(),
            error_codes::NOT_FOUND,
            rejection.body_text(),
        )
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// `axum::extract::Path` whose rejections are [`ApiError`]s.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}
