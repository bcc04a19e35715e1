//! The library's one error type: every layer returns it; the OFX entry points map it to an
//! `OfxStatus` and the command line prints it.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model weights file (or the built-in model) that cannot be used.
    #[error("model file {path}: {msg}")]
    Model { path: PathBuf, msg: String },
    /// A parameter or argument outside what the effect accepts.
    #[error("invalid {name}: {msg}")]
    Param { name: String, msg: String },
    /// An image that cannot be read, written or processed.
    #[error("image {what}: {msg}")]
    Image { what: String, msg: String },
    /// The host or the user stopped the render.
    #[error("render aborted")]
    Aborted,
    /// A requested device (GPU) that this build or this machine does not have.
    #[error("device: {0}")]
    Device(String),
    /// Pixels the effect cannot take (a depth or components outside what it declares).
    #[error("image pixel format: {0}")]
    PixelFormat(String),
    /// Memory ran out (host RAM or a GPU's), as candle reported it: classified once, here.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    #[error("tensor computation failed: {0}")]
    Candle(candle_core::Error),
    /// The cause is part of the message (hosts show only the message), so it is not also
    /// chained as a `source`, which would print it twice under `{:#}`.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
    /// The host broke the OFX API or refused a call (a null handle, a missing suite function, a
    /// failed status).
    #[error("host: {0}")]
    Host(String),
    /// A broken invariant of the library itself (a bug to report, not something a user can fix).
    #[error("internal error: {0}")]
    Internal(String),
    /// An external tool or source file that data preparation needs is missing or failed.
    #[error("{0}")]
    Tool(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Candle's errors cross into ours at the model boundary: an allocation that failed (CPU, CUDA
/// or Metal, which report it only in words) becomes `OutOfMemory`, the rest `Candle`.
impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        let m = e.to_string();
        let l = m.to_ascii_lowercase();
        if l.contains("out of memory")
            || l.contains("out_of_memory")
            || l.contains("memory allocation")
        {
            Error::OutOfMemory(m)
        } else {
            Error::Candle(e)
        }
    }
}

impl Error {
    pub fn param(name: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Param {
            name: name.into(),
            msg: msg.into(),
        }
    }
    pub fn model(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn image(what: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Image {
            what: what.into(),
            msg: msg.into(),
        }
    }
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            cause: source,
        }
    }
}
