//! Image config → runtime config.

/// Why an image config could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("placeholder")]
    Placeholder,
}
