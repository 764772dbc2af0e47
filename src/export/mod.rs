//! Outputs for other tools: docker-save tarballs, and extracted, shared
//! and expanded image directories (with `recreate` to turn a shared one
//! back into a tarball).

pub(crate) mod catalog;
pub(crate) mod docker_save;
pub mod extracted;
pub(crate) mod oci_layout;
pub(crate) mod recreate;

use std::io::{BufWriter, Seek};
use std::path::Path;

use crate::digest::Digest;
use crate::filter::Filter;
use crate::image::ResolvedImage;
use crate::output::Staged;
use crate::pull;
use crate::source::Source;
use crate::{Error, Result};
use docker_save::{CopyError, Layout, TarWriter};

/// Write `image` as a `docker load`-able tarball at `target`, tagged with
/// `repo_tags` (Docker's familiar names, e.g. `busybox:latest`). The file
/// appears only when complete and verified. With a `filter` that changes
/// something, layers and config are rewritten (see [`crate::filter`]): the
/// tarball holds a new image.
pub async fn docker_tarball(
    source: &Source,
    image: &ResolvedImage,
    target: &Path,
    repo_tags: &[String],
    filter: &Filter,
    progress: &crate::progress::Progress,
) -> Result<()> {
    let (staged, file) = Staged::file(target)?;
    let tmp = staged.path().to_path_buf();
    let io_err = move |e| Error::io(&tmp, e);
    let mut writer = TarWriter::new(BufWriter::with_capacity(1 << 20, file));
    let filter = (!filter.is_empty()).then(|| filter.clone());
    let rewriting = filter.clone();
    if filter.is_none() {
        // Unfiltered, the config keeps its bytes and its name is known.
        writer
            .add_file(&Layout::of(image).config, &image.config_bytes)
            .map_err(&io_err)?;
    }
    let tmp = staged.path().to_path_buf();
    let limits = source.layer_limits();
    let state = (writer, Vec::<Digest>::new());
    let (mut writer, diff_ids) = pull::each_layer(
        source,
        image,
        progress,
        state,
        move |(w, diff_ids), layer, reader| {
            let result = match &filter {
                None => {
                    let name = docker_save::layer_path(layer.diff_id.hex());
                    diff_ids.push(layer.diff_id.clone());
                    if w.contains(&name) {
                        // The same layer twice in one image: verify it, store it once.
                        docker_save::copy_layer(reader, &mut std::io::sink(), limits).map(drop)
                    } else {
                        w.add_stream(&name, |out| docker_save::copy_layer(reader, out, limits))
                            .map(drop)
                    }
                }
                Some(filter) => w
                    .add_stream_named(|out| {
                        let start = out.stream_position().map_err(CopyError::Write)?;
                        let diff_id = filter.rewrite_layer(&mut *reader, &mut *out, limits)?;
                        let end = out.stream_position().map_err(CopyError::Write)?;
                        diff_ids.push(diff_id.clone());
                        Ok((end - start, docker_save::layer_path(diff_id.hex())))
                    })
                    .map(drop),
            };
            copied(result, reader, layer, &tmp)
        },
    )
    .await?;
    let layout = match &rewriting {
        None => Layout::of(image),
        Some(filter) => {
            let config =
                filter.rewrite_config(&image.config_bytes, &image.config_digest, &diff_ids)?;
            let layout = Layout::new(&Digest::sha256_of(&config), &diff_ids);
            writer.add_file(&layout.config, &config).map_err(&io_err)?;
            layout
        }
    };
    writer
        .add_file("manifest.json", &layout.manifest_json(repo_tags))
        .map_err(&io_err)?;
    if let Some(repos) = image
        .reference
        .as_ref()
        .and_then(|r| layout.repositories_for(r))
    {
        writer.add_file("repositories", &repos).map_err(&io_err)?;
    }
    let file = writer.finish().map_err(&io_err)?;
    file.into_inner().map_err(|e| io_err(e.into_error()))?;
    staged.commit()
}

/// The library error for a failed layer copy.
fn copied(
    result: std::result::Result<(), CopyError>,
    reader: &mut pull::LayerReader,
    layer: &crate::image::LayerRef,
    output: &Path,
) -> Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(CopyError::Read(e)) => Err(reader.classify(e)),
        Err(CopyError::Write(e)) => Err(Error::io(output, e)),
        Err(CopyError::Tar(e)) => {
            Err(crate::unpack::UnpackError::Tar(e).into_error(&layer.digest.to_string()))
        }
    }
}
