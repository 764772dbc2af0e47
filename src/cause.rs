//! Finding the error of a given type inside an I/O error, however deeply
//! wrapped: the tar reader, the decompressors and our readers wrap the
//! errors of what they read. A leaf module, so that the modules that
//! define errors (digest, error) need not import each other.

/// The error of type `T` that `err` carries, however deeply wrapped.
pub fn find<T: std::error::Error + 'static>(err: &std::io::Error) -> Option<&T> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = err.get_ref().map(|e| e as _);
    while let Some(e) = cause {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        cause = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref().map(|e| e as _))
            .or_else(|| e.source());
    }
    None
}
