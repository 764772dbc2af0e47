//! OCI runtime bundles: every layer applied into `rootfs/` and the image
//! config converted into `config.json`, ready for `runc run`.

pub mod convert;
pub mod users;

use std::path::Path;

use crate::fsroot::RootDir;
use crate::image::ResolvedImage;
use crate::output::Staged;
use crate::source::Source;
use crate::unpack::{self, UnpackOptions};
use crate::{Error, Result, pull};
use convert::ConvertOptions;
use users::AccountFile;

/// /etc/passwd or /etc/group larger than this is not an account database.
const ACCOUNTS_LIMIT: u64 = 16 * 1024 * 1024;

/// How to build a bundle.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// The runtime config the image's settings are applied to (JSON):
    /// [`convert::DEFAULT_PROFILE`], [`convert::ROOTLESS_PROFILE`],
    /// [`convert::DOCKER_PROFILE`] or a user's own.
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
/// complete; on any error nothing is left there. It is mode 0700, as
/// umoci makes it: other host users must not reach the image's setuid
/// binaries and device nodes through `dir/rootfs`.
pub async fn create(
    source: &Source,
    image: &ResolvedImage,
    dir: &Path,
    opts: &BundleOptions,
    progress: &crate::progress::Progress,
) -> Result<()> {
    convert::check_profile(&opts.profile)?;
    // Private: the rootfs holds the image's setuid binaries and devices.
    let staged = Staged::private_dir(dir, opts.replace)?;
    let rootfs = staged.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(|e| Error::io(&rootfs, e))?;
    let root = RootDir::open(&rootfs).map_err(|e| Error::io(&rootfs, e))?;
    let unpack_opts = UnpackOptions {
        limits: source.layer_limits(),
        ..opts.unpack.clone()
    };
    let start = (root, unpack::LayerStats::default());
    let (root, stats) = pull::each_layer(
        source,
        image,
        progress,
        start,
        move |(root, stats), layer, reader| {
            let applied = unpack::apply_layer(root, reader, &unpack_opts)
                .map_err(|source| source.into_error(&layer.digest.to_string()))?;
            stats.add(&applied);
            Ok(())
        },
    )
    .await?;
    stats.warn_skipped();
    let passwd = read_accounts(&root, "/etc/passwd")?;
    let group = read_accounts(&root, "/etc/group")?;
    let spec = convert::convert(
        &image.config,
        &opts.profile,
        passwd.as_file(),
        group.as_file(),
        &opts.convert,
    )?;
    let config_path = staged.path().join("config.json");
    let mut bytes = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Usage(e.to_string()))?;
    bytes.push(b'\n');
    std::fs::write(&config_path, bytes).map_err(|e| Error::io(&config_path, e))?;
    staged.commit()
}

/// An account file read from the rootfs, owned.
enum Accounts {
    Read(Vec<u8>),
    Absent,
    Unreadable(String),
}

impl Accounts {
    fn as_file(&self) -> AccountFile<'_> {
        match self {
            Accounts::Read(data) => AccountFile::Read(data),
            Accounts::Absent => AccountFile::Absent,
            Accounts::Unreadable(reason) => AccountFile::Unreadable(reason),
        }
    }
}

/// Read `/etc/passwd` or `/etc/group` confined to the rootfs. What the image
/// put there (a symlink to `/dev/null` or out of the root, a directory, a
/// loop, a huge file) makes it unreadable, not the bundle a failure: runc
/// ignores such files too, so only a user or group *name* then fails. A
/// failure of the host is an error, named by the image path (the staging
/// directory is gone by the time anyone reads the message).
fn read_accounts(root: &RootDir, path: &str) -> Result<Accounts> {
    match root.read_file(path, ACCOUNTS_LIMIT) {
        Ok(Some(data)) => Ok(Accounts::Read(data)),
        Ok(None) => Ok(Accounts::Absent),
        Err(e) if is_host_failure(&e) => Err(Error::io(format!("{path} in the image"), e)),
        Err(e) => {
            tracing::info!("{path} in the image cannot be read ({e}): treating it as empty");
            Ok(Accounts::Unreadable(e.to_string()))
        }
    }
}

/// Errors that say nothing about the file, only about this machine.
fn is_host_failure(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EINTR)
    )
}
