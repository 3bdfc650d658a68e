//! The one error type of the server. Every interface renders it the same way: a REST
//! body `{ "error": { code, message, request_id } }`, a real-time `error` reply, a gRPC
//! status (with the code in its details' `ErrorInfo`). Internal details (SQL errors,
//! I/O) are logged, never sent to a client.

use axum::response::{IntoResponse, Response};
use mkondo_proto::{v1, ErrorCode, Reason};
use tonic_types::{ErrorDetails, StatusExt as _};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    /// A finer, stable reason within the code (e.g. `bad_signature`), or `None`.
    pub reason: Reason,
    pub retry_after_ms: u32,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            reason: Reason::None,
            retry_after_ms: 0,
        }
    }

    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = reason;
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }

    pub fn rate_limited(retry_after_ms: u32) -> Self {
        Self {
            retry_after_ms,
            ..Self::new(ErrorCode::RateLimited, "too many commands")
        }
    }

    pub fn to_proto(&self) -> v1::Error {
        v1::Error {
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
            temporary: self.code.temporary(),
            retry_after_ms: self.retry_after_ms,
            reason: self.reason.as_str().to_owned(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    /// A write lost a race with a concurrent one: an `unavailable` error with reason
    /// `conflict`, which the store runs again (`store::retrying`) before giving up.
    pub fn is_conflict(&self) -> bool {
        self.code == ErrorCode::Unavailable && self.reason == Reason::Conflict
    }

    /// What a write that found the world changed under it answers, so that
    /// `store::retrying` runs it again.
    pub fn conflict() -> Self {
        Self::new(ErrorCode::Unavailable, "concurrent change, retry").with_reason(Reason::Conflict)
    }
}

/// What a database error means to a client: worth retrying (a conflict with a
/// concurrent writer, the database unreachable or out of space) or not.
enum DbFailure {
    Conflict,
    Unavailable,
    Other,
}

fn classify(err: &sqlx::Error) -> DbFailure {
    match err {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return DbFailure::Conflict;
            }
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                let code = pg.code();
                return match code {
                    // serialization_failure, deadlock_detected
                    "40001" | "40P01" => DbFailure::Conflict,
                    // admin / crash shutdown, cannot connect now, read-only (a
                    // standby during failover)
                    "57P01" | "57P02" | "57P03" | "25006" => DbFailure::Unavailable,
                    // connection exceptions, insufficient resources (disk full,
                    // out of memory, too many connections), system errors (I/O)
                    _ if ["08", "53", "58"]
                        .iter()
                        .any(|class| code.starts_with(class)) =>
                    {
                        DbFailure::Unavailable
                    }
                    _ => DbFailure::Other,
                };
            }
            // SQLite's primary result code: BUSY, LOCKED, IOERR, FULL, CANTOPEN.
            let primary = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .map(|c| c & 0xff);
            match primary {
                Some(5 | 6 | 10 | 13 | 14) => DbFailure::Unavailable,
                _ => DbFailure::Other,
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => DbFailure::Unavailable,
        _ => DbFailure::Other,
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::RowNotFound = err {
            return Self::not_found("record");
        }
        match classify(&err) {
            DbFailure::Conflict => {
                tracing::debug!(error = %err, "database conflict with a concurrent writer");
                Self::new(ErrorCode::Unavailable, "concurrent change, retry")
                    .with_reason(Reason::Conflict)
            }
            DbFailure::Unavailable => {
                tracing::warn!(error = %err, "database unavailable");
                Self::new(ErrorCode::Unavailable, "database unavailable, retry")
            }
            DbFailure::Other => {
                tracing::error!(error = %err, "database error");
                Self::internal()
            }
        }
    }
}

impl From<crate::auth::TokenError> for Error {
    fn from(err: crate::auth::TokenError) -> Self {
        Self::new(err.code(), err.to_string()).with_reason(err.reason())
    }
}

impl From<mkondo_proto::convert::ConvertError> for Error {
    fn from(err: mkondo_proto::convert::ConvertError) -> Self {
        Self::invalid(err.to_string())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = http::StatusCode::from_u16(self.code.http_status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let request_id = ulid::Ulid::new().to_string();
        let mut body = serde_json::json!({
            "error": {
                "code": self.code.as_str(),
                "message": self.message,
                "request_id": request_id,
            }
        });
        if !self.reason.is_none() {
            body["error"]["reason"] = self.reason.as_str().into();
        }
        let mut response = (status, axum::Json(body)).into_response();
        if self.retry_after_ms > 0 {
            let secs = self.retry_after_ms.div_ceil(1000).to_string();
            if let Ok(value) = http::HeaderValue::from_str(&secs) {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// The `domain` of the `google.rpc.ErrorInfo` in a gRPC status's details.
pub const ERROR_DOMAIN: &str = "mkondo";

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        use tonic::Code;
        let code = match err.code {
            ErrorCode::Unauthenticated | ErrorCode::TokenExpired | ErrorCode::InvalidToken => {
                Code::Unauthenticated
            }
            ErrorCode::PermissionDenied | ErrorCode::Blocked | ErrorCode::Rejected => {
                Code::PermissionDenied
            }
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::AlreadyExists => Code::AlreadyExists,
            ErrorCode::InvalidArgument | ErrorCode::TooLarge => Code::InvalidArgument,
            ErrorCode::RateLimited => Code::ResourceExhausted,
            ErrorCode::Unavailable => Code::Unavailable,
            _ => Code::Internal,
        };
        // The standard rich error model: a `google.rpc.Status` in the details whose
        // `ErrorInfo` carries the code (and the reason), as any gRPC client decodes it.
        let mut metadata = std::collections::HashMap::new();
        if !err.reason.is_none() {
            metadata.insert("reason".to_owned(), err.reason.as_str().to_owned());
        }
        let mut details = ErrorDetails::with_error_info(err.code.as_str(), ERROR_DOMAIN, metadata);
        if err.retry_after_ms > 0 {
            let wait = std::time::Duration::from_millis(u64::from(err.retry_after_ms));
            details.set_retry_info(Some(wait));
        }
        let mut status = tonic::Status::with_error_details(code, err.message.clone(), details);
        if let Ok(v) = err.code.as_str().parse() {
            status.metadata_mut().insert("mkondo-error-code", v);
        }
        status
    }
}
