//! API errors: one JSON shape, `{"error": {"code", "message"}}`, with the right status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use govchain_chaincode::TxError;

use crate::openapi::{ErrorBody, ErrorDetail};
use crate::AdmitError;

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Seconds for `Retry-After`, if any.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }
    /// 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 500, for store failures.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            message.to_string(),
        )
    }
}

impl From<TxError> for ApiError {
    fn from(e: TxError) -> Self {
        let status = match &e {
            TxError::UnknownKind(_) | TxError::Malformed(_) | TxError::WrongChain { .. } => {
                StatusCode::BAD_REQUEST
            }
            TxError::Replay { .. } | TxError::AlreadyExists { .. } | TxError::InUse { .. } => {
                StatusCode::CONFLICT
            }
            TxError::Unauthorized { .. } => StatusCode::FORBIDDEN,
            TxError::NotFound { .. }
            | TxError::Invalid { .. }
            | TxError::InvalidRecord { .. }
            | TxError::TooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            TxError::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl From<AdmitError> for ApiError {
    fn from(e: AdmitError) -> Self {
        match &e {
            AdmitError::Full { retry_after_ms, .. } => Self {
                retry_after_s: Some(retry_after_ms.div_ceil(1000).max(1)),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "mempool_full",
                    e.to_string(),
                )
            },
            AdmitError::Duplicate(_) => {
                Self::new(StatusCode::CONFLICT, "duplicate_tx", e.to_string())
            }
            AdmitError::NonceInUse => {
                Self::new(StatusCode::CONFLICT, "replayed_nonce", e.to_string())
            }
            AdmitError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}
