//! The serialisable error every shell receives: a stable code, a plain message, and the
//! provider it concerns when there is one.

use serde::{Deserialize, Serialize};

use crate::error::{BrokerError, ErrorCode};
use crate::service::ServiceError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, ts_rs::TS)]
#[error("{message}")]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
    /// The provider the failure is about (reconnect it, connect it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            resource: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::InvalidInput, message)
    }
}

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Failure {
        Failure::from(&e)
    }
}

impl From<&BrokerError> for Failure {
    fn from(e: &BrokerError) -> Failure {
        Failure {
            code: e.code(),
            message: e.to_string(),
            resource: e.resource().map(str::to_string),
        }
    }
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Failure {
        let code = match e {
            ServiceError::NoHome => ErrorCode::NotConfigured,
            ServiceError::Io { .. } => ErrorCode::ConfigFile,
            ServiceError::Unsupported(_) => ErrorCode::InvalidInput,
            ServiceError::Invalid { .. } | ServiceError::Manager { .. } => ErrorCode::Internal,
        };
        Failure::new(code, e.to_string())
    }
}
