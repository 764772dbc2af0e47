//! What an image is, as JSON: the result every command that made
//! something reports, and what `inspect` shows (a config summary, the
//! history matched to the layers, sizes). The schema is documented in the
//! README ("Progress and results"); front ends print it as they like.

use std::path::Path;

use serde_json::{Value, json};

use crate::image::ResolvedImage;

/// What `inspect` adds to the result.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shown {
    /// A summary of the config (user, entrypoint, env, labels...).
    pub config: bool,
    /// The history, each entry matched to its layer.
    pub history: bool,
    /// Each layer's index, and the total size.
    pub layers: bool,
}

/// The image as a result: reference, digests, image ID, platform, layers,
/// and `output` (what was made) and `warnings`.
pub fn result(image: &ResolvedImage, output: Option<&Path>, warnings: Vec<String>) -> Value {
    let layers: Vec<_> = image
        .layers
        .iter()
        .map(|l| {
            json!({
                "digest": l.digest.to_string(),
                "size": l.size,
                "mediaType": l.media_type,
                "diffID": l.diff_id.to_string(),
            })
        })
        .collect();
    json!({
        "reference": image.name,
        "indexDigest": image.index.as_ref().map(|i| i.digest.to_string()),
        "manifestDigest": image.manifest.digest.to_string(),
        "manifestMediaType": image.manifest.media_type,
        "imageID": image.config_digest.to_string(),
        "platform": image.platform().to_string(),
        "layers": layers,
        "output": output.map(|o| o.to_string_lossy()),
        "warnings": warnings,
    })
}

/// What `inspect` prints: the result, with what `shown` asks for; a
/// history that does not pair up with the layers adds a warning.
pub fn inspect(image: &ResolvedImage, shown: Shown) -> Value {
    let mut value = result(image, None, Vec::new());
    if shown.config {
        value["config"] = config_summary(image);
    }
    if shown.history {
        let (entries, mismatch) = history(image);
        value["history"] = entries;
        if let Some(warning) = mismatch
            && let Some(list) = value["warnings"].as_array_mut()
        {
            list.push(warning.into());
        }
    }
    if shown.layers {
        for (i, layer) in value["layers"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .enumerate()
        {
            layer["index"] = i.into();
        }
        value["totalSize"] = image.layers.iter().map(|l| l.size).sum::<u64>().into();
    }
    value
}

/// What the image config says a container runs as and with.
fn config_summary(image: &ResolvedImage) -> Value {
    let c = image.config.config().as_ref();
    json!({
        "user": c.and_then(|c| c.user().clone()),
        "workingDir": c.and_then(|c| c.working_dir().clone()),
        "entrypoint": c.and_then(|c| c.entrypoint().clone()),
        "cmd": c.and_then(|c| c.cmd().clone()),
        "env": c.and_then(|c| c.env().clone()),
        "labels": c.and_then(|c| c.labels().clone()),
        "exposedPorts": c.and_then(|c| c.exposed_ports().clone()),
        "volumes": c.and_then(|c| c.volumes().clone()),
        "stopSignal": c.and_then(|c| c.stop_signal().clone()),
        "created": image.config.created().clone(),
        "author": image.config.author().clone(),
    })
}

/// The config's history, each entry that made a layer matched to it in
/// order (`layer`: its index), and a warning when they do not pair up.
fn history(image: &ResolvedImage) -> (Value, Option<String>) {
    let matched = image.history_by_layer();
    let entries: Vec<Value> = matched
        .entries
        .iter()
        .map(|(h, layer)| {
            json!({
                "created": h.created().clone(),
                "createdBy": h.created_by().clone(),
                "comment": h.comment().clone(),
                "emptyLayer": h.empty_layer().unwrap_or(false),
                "layer": layer,
                "size": layer.and_then(|i| image.layers.get(i)).map(|l| l.size),
            })
        })
        .collect();
    (Value::Array(entries), matched.mismatch())
}
