//! Base64 as image metadata writes it: `docker login`'s `auth` entries
//! and libarchive's xattr values, with or without padding.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decode standard base64, padding optional; `None` if malformed.
pub fn decode_base64(text: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    STANDARD_ANY_PADDING.decode(text).ok()
}
