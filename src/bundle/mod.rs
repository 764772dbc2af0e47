//! OCI runtime bundles: every layer applied into `rootfs/` and the image
//! config converted into `config.json`, ready for `runc run`.

pub mod convert;
pub mod users;

use std::path::Path;

use crate::fsroot::RootDir;
use crate::image::ResolvedImage;
use crate::output::Staged;
use crate::registry::Registry;
use crate::unpack::{self, UnpackOptions};
use crate::{Error, Result, pull};
use convert::ConvertOptions;

/// /etc/passwd or /etc/group larger than this is not an account database.
const ACCOUNTS_LIMIT: u64 = 16 * 1024 * 1024;

/// How to build a bundle.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// The runtime config the image's settings are applied to (JSON):
    /// [`convert::DEFAULT_PROFILE`], [`convert::ROOTLESS_PROFILE`] or a user's own.
    pub profile: String,
    /// Process, hostname and root overrides.
    pub convert: ConvertOptions,
    /// How layer entries are written.
    pub unpack: UnpackOptions,
    /// Replace an existing bundle directory (only once the new one is complete).
    pub replace: bool,
}

impl Default for BundleOptions {
    fn default() -> Self {
        BundleOptions {
            profile: convert::DEFAULT_PROFILE.to_string(),
            convert: ConvertOptions::default(),
            unpack: UnpackOptions::default(),
            replace: false,
        }
    }
}

/// Build a bundle of `image` at `dir`. The directory appears only when
/// complete; on any error nothing is left there.
pub async fn create(
    registry: &Registry,
    image: &ResolvedImage,
    dir: &Path,
    opts: &BundleOptions,
) -> Result<()> {
    convert::check_profile(&opts.profile)?;
    let staged = Staged::dir(dir, opts.replace)?;
    let rootfs = staged.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(|e| Error::io(&rootfs, e))?;
    let root = RootDir::open(&rootfs).map_err(|e| Error::io(&rootfs, e))?;
    let unpack_opts = UnpackOptions {
        limits: registry.layer_limits(),
        ..opts.unpack.clone()
    };
    let root = pull::each_layer(registry, image, root, move |root, layer, reader| {
        unpack::apply_layer(root, reader, &unpack_opts)
            .map(|_| ())
            .map_err(|source| source.into_error(&layer.digest.to_string()))
    })
    .await?;
    let passwd = read_accounts(&root, "/etc/passwd")?;
    let group = read_accounts(&root, "/etc/group")?;
    let spec = convert::convert(
        &image.config,
        &opts.profile,
        passwd.as_deref(),
        group.as_deref(),
        &opts.convert,
    )?;
    let config_path = staged.path().join("config.json");
    let mut bytes = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Usage(e.to_string()))?;
    bytes.push(b'\n');
    std::fs::write(&config_path, bytes).map_err(|e| Error::io(&config_path, e))?;
    staged.commit()
}

fn read_accounts(root: &RootDir, path: &str) -> Result<Option<Vec<u8>>> {
    root.read_file(path, ACCOUNTS_LIMIT)
        .map_err(|e| Error::io(root.path().join(path.trim_start_matches('/')), e))
}
