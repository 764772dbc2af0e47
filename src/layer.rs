//! One layer as a verified stream.

/// A blob or layer failed verification.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error("placeholder")]
    Placeholder,
}
