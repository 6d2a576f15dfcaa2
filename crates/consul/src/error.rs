use runtime::http::HttpError;
use runtime::{Exit, ToExit};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsulError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// 401/403: the ACL token is missing, unknown or lacks a permission (a configuration problem,
    /// exit 64: retrying cannot help). Consul answers 403 ("Permission denied", "ACL not found");
    /// a proxy in front of it that wants credentials answers 401.
    #[error("consul denied {what}: {message} (set CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE, or the watch's token)")]
    Forbidden { what: String, message: String },
    #[error("invalid Consul key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// Bad Consul settings (address, token file, CA file).
    #[error("consul configuration: {0}")]
    Config(String),
    #[error("consul {what}: unexpected answer: {reason}")]
    Unexpected { what: String, reason: String },
}

impl ToExit for ConsulError {
    fn exit(&self) -> Exit {
        match self {
            ConsulError::Http(e) => e.exit(),
            ConsulError::Forbidden { .. } | ConsulError::Config(_) => Exit::Usage,
            ConsulError::InvalidKey { .. } => Exit::DataErr,
            ConsulError::Unexpected { .. } => Exit::TempFail,
        }
    }
}

impl ConsulError {
    /// Maps a non-success answer to an error, recognising ACL denials (401 and 403).
    pub(crate) fn from_response(what: &str, resp: &runtime::http::HttpResponse) -> ConsulError {
        if matches!(resp.status, 401 | 403) {
            ConsulError::Forbidden {
                what: what.to_string(),
                message: match resp.error() {
                    HttpError::Status { body, .. } => body.chars().take(300).collect(),
                    other => other.to_string(),
                },
            }
        } else {
            ConsulError::Http(resp.error())
        }
    }
}
