use crate::bindings::runledger::plugin::types::Error as RawError;
use std::fmt;

/// The result type of plugin code.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure a plugin reports to the host as a value.
///
/// The host records the message in the step's record, so say what was wrong, on which value and
/// what to do about it:
///
/// ```
/// let error = runledger_sdk::Error::InvalidInput("column `quality` is missing".into());
/// assert_eq!(error.to_string(), "invalid input: column `quality` is missing");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The params are unusable even though they passed the plugin's params schema.
    InvalidParams(String),
    /// An input artifact is missing, unreadable or has the wrong content.
    InvalidInput(String),
    /// A named artifact does not exist in this call.
    NotFound(String),
    /// The call went past a limit the host enforces.
    LimitExceeded(String),
    /// A handle was used in a state that does not allow the operation.
    InvalidState(String),
    /// Reading or writing artifact bytes failed.
    Io(String),
    /// Any other failure.
    Other(String),
}

impl Error {
    /// Creates an [`Error::Other`] from anything printable.
    ///
    /// ```
    /// let error = runledger_sdk::Error::other(format!("{} epochs diverged", 3));
    /// assert!(matches!(error, runledger_sdk::Error::Other(_)));
    /// ```
    pub fn other(message: impl fmt::Display) -> Self {
        Self::Other(message.to_string())
    }

    /// Creates an [`Error::InvalidParams`], for params or a configuration that passed the
    /// plugin's schema but are unusable.
    ///
    /// ```
    /// let error = runledger_sdk::Error::invalid_params("rule `rmse <<= 1` has no operator");
    /// assert!(matches!(error, runledger_sdk::Error::InvalidParams(_)));
    /// ```
    pub fn invalid_params(message: impl fmt::Display) -> Self {
        Self::InvalidParams(message.to_string())
    }

    pub(crate) fn from_raw(raw: RawError) -> Self {
        match raw {
            RawError::InvalidParams(m) => Self::InvalidParams(m),
            RawError::InvalidInput(m) => Self::InvalidInput(m),
            RawError::NotFound(m) => Self::NotFound(m),
            RawError::LimitExceeded(m) => Self::LimitExceeded(m),
            RawError::InvalidState(m) => Self::InvalidState(m),
            RawError::Io(m) => Self::Io(m),
            RawError::Other(m) => Self::Other(m),
        }
    }

    pub(crate) fn into_raw(self) -> RawError {
        match self {
            Self::InvalidParams(m) => RawError::InvalidParams(m),
            Self::InvalidInput(m) => RawError::InvalidInput(m),
            Self::NotFound(m) => RawError::NotFound(m),
            Self::LimitExceeded(m) => RawError::LimitExceeded(m),
            Self::InvalidState(m) => RawError::InvalidState(m),
            Self::Io(m) => RawError::Io(m),
            Self::Other(m) => RawError::Other(m),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidParams(m) => write!(f, "invalid params: {m}"),
            Self::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Self::NotFound(m) => write!(f, "not found: {m}"),
            Self::LimitExceeded(m) => write!(f, "limit exceeded: {m}"),
            Self::InvalidState(m) => write!(f, "invalid state: {m}"),
            Self::Io(m) => write!(f, "i/o error: {m}"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// Keeps the host's error kind when it travelled through `std::io::Read` or `Write`.
impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Error>())
        {
            Some(inner) => inner.clone(),
            None => Self::Io(error.to_string()),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Self::Other(format!("json: {error}"))
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::Other(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::Other(message.to_owned())
    }
}
