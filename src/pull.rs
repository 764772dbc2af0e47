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
    let count = image.layers.len();
    for (i, layer) in image.layers.iter().cloned().enumerate() {
        tracing::info!(
            "layer {}/{count} {} ({})",
            i + 1,
            layer.digest,
            human_size(layer.size)
        );
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

/// `1.2 MB`-style sizes for progress lines.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human_size(999), "999 B");
        assert_eq!(super::human_size(1_234_567), "1.2 MB");
        assert_eq!(super::human_size(3_000_000_000), "3.0 GB");
    }
}
