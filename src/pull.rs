//! Fetch an image's layers as verified, uncompressed tar streams and hand
//! each, lowest first, to a consumer running on a blocking thread (the
//! consumers — unpacking, tar writing — are synchronous file I/O).

use crate::image::{LayerRef, ResolvedImage};
use crate::layer::LayerReader;
use crate::registry::Registry;
use crate::{Error, Result};

/// Stream every layer of `image` through `consume`, in order. `state` is
/// threaded through the calls and returned. Each layer is verified (blob
/// digest and size, diff_id) before the next one starts; a consumer error
/// caused by failed verification is reported as the integrity error.
pub async fn each_layer<S, F>(
    registry: &Registry,
    image: &ResolvedImage,
    state: S,
    consume: F,
) -> Result<S>
where
    S: Send + 'static,
    F: FnMut(&mut S, &LayerRef, &mut LayerReader) -> Result<()> + Send + 'static,
{
    let mut carried = (state, consume);
    for layer in image.layers.iter().cloned() {
        let blob = registry
            .open_blob("layer", &layer.digest, layer.size)
            .await?;
        let (mut state, mut consume) = carried;
        carried = tokio::task::spawn_blocking(move || {
            let mut reader = LayerReader::new(
                blob,
                &layer.media_type,
                &layer.digest.to_string(),
                layer.diff_id.clone(),
            )
            .map_err(|e| Error::Registry {
                reference: format!("layer {}", layer.digest),
                message: e.to_string(),
            })?;
            if let Err(e) = consume(&mut state, &layer, &mut reader) {
                return Err(reader.failure().map(Error::Integrity).unwrap_or(e));
            }
            reader.finish()?;
            Ok((state, consume))
        })
        .await
        .map_err(|e| Error::Usage(format!("internal error: layer task failed: {e}")))??;
    }
    Ok(carried.0)
}
