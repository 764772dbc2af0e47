//! Apply a layer's tar entries to a root directory.

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("placeholder")]
    Placeholder,
}

impl UnpackError {
    /// True when the layer itself is at fault (malformed or hostile).
    pub fn is_integrity(&self) -> bool {
        true
    }
}
