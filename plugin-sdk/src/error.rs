//! The error a handler returns; any `std::error::Error` converts into it with `?`.

use std::fmt;

/// A handler's failure. The delivery fails and hookrouter retries it later.
///
/// Like `anyhow::Error`, any error type converts into it, so `?` works on JSON
/// parsing, number parsing and so on; [`Error::msg`] makes one from text.
pub struct Error(String);

/// `Result<T, Error>`, the handler's return type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error(message.to_string())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        Error(error.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?})", self.0)
    }
}
