//! OCI runtime bundles: every layer applied into `rootfs/` and the image
//! config converted into `config.json`, ready for `runc run`.

pub mod convert;
pub mod users;

use std::path::Path;

use std::path::PathBuf;

use crate::escape;
use crate::fsroot::RootDir;
use crate::image::ResolvedImage;
use crate::output::Staged;
use crate::source::Source;
use crate::store::{self, Store};
use crate::unpack::{self, UnpackOptions};
use crate::{Error, Result, pull};
use convert::ConvertOptions;
use users::AccountFile;

/// /etc/passwd or /etc/group larger than this is not an account database.
const ACCOUNTS_LIMIT: u64 = 16 * 1024 * 1024;

/// What a bundle's `rootfs/` is.
#[derive(Debug, Clone, Default)]
pub enum Rootfs {
    /// Every layer applied into a directory of its own (the default).
    #[default]
    Copy,
    /// An overlay mount of the image's layers in this store, with the
    /// container's writes kept in the bundle (see [`crate::store`]). The
    /// mount outlives the process: [`remove`] unmounts and deletes.
    Overlay(Store),
    /// An overlay if one can be mounted here, else a copy (with a
    /// warning saying why).
    Auto(Store),
    /// A copy of the image's layers in this store: a read-only overlay of
    /// them copied with `cp -a --reflink=auto` (shared blocks on XFS and
    /// btrfs, a plain copy elsewhere). The bundle does not use the store
    /// after: it holds no lease and no mount.
    StoreCopy(Store),
}

/// How to build a bundle.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// A copy, or an overlay of stored layers.
    pub rootfs: Rootfs,
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
            rootfs: Rootfs::Copy,
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
    if opts.replace && store::is_mountpoint(&dir.join("rootfs")) {
        return Err(Error::Usage(format!(
            "{}: its rootfs is mounted: remove it first (occystrap remove)",
            escape::path(dir)
        )));
    }
    // Private: the rootfs holds the image's setuid binaries and devices.
    let staged = Staged::private_dir(dir, opts.replace)?;
    let rootfs = staged.path().join("rootfs");
    std::fs::create_dir(&rootfs).map_err(|e| Error::io(&rootfs, e))?;
    let unpack_opts = UnpackOptions {
        limits: source.layer_limits(),
        ..opts.unpack.clone()
    };
    // Stored layers are the image's own, shared by every bundle.
    if !matches!(opts.rootfs, Rootfs::Copy) && !opts.unpack.filter.is_empty() {
        return Err(Error::Usage(
            "--exclude changes the layers, and stored layers are shared: use it with --rootfs copy"
                .into(),
        ));
    }
    if let Rootfs::StoreCopy(store) = &opts.rootfs {
        let target = absolute(dir)?;
        // Ended when this returns: the copy does not use the store after,
        // but `prune` must not free its layers while it is being made.
        let _lease = Lease {
            store,
            bundle: &target,
            kept: false,
        };
        let (lowers, _held) = store
            .ensure(source, image, &target, &unpack_opts, progress)
            .await?;
        // cp takes as long as the image is big: not on the async runtime.
        let (copier, into, named) = (store.clone(), rootfs.clone(), dir.join("rootfs"));
        tokio::task::spawn_blocking(move || copier.copy_merged(&lowers, &into, &named))
            .await
            .map_err(|e| Error::Usage(format!("internal error: the copy failed: {e}")))??;
        let root = RootDir::open(&rootfs).map_err(|e| Error::io(&rootfs, e))?;
        write_config(&root, image, opts, staged.path())?;
        drop(root);
        return staged.commit();
    }
    if let Rootfs::Overlay(store) | Rootfs::Auto(store) = &opts.rootfs {
        let target = absolute(dir)?;
        let lease = Lease {
            store,
            bundle: &target,
            kept: false,
        };
        let auto = matches!(opts.rootfs, Rootfs::Auto(_));
        // The store's lock is held until the bundle exists: `prune` waits.
        let refused = match store
            .ensure(source, image, &target, &unpack_opts, progress)
            .await
        {
            // Storing a layer mounts an overlay too: the store's own
            // filesystem may refuse it.
            Err(e @ Error::Overlay { .. }) if auto => e,
            Err(e) => return Err(e),
            Ok((mut lowers, _held)) => {
                let private = staged.path().join(OVERLAY_DIR);
                let (upper, work, empty) = (
                    private.join("upper"),
                    private.join("work"),
                    private.join("empty"),
                );
                for d in [&private, &upper, &work, &empty] {
                    std::fs::create_dir(d).map_err(|e| Error::io(d, e))?;
                }
                if lowers.is_empty() {
                    // Overlay wants a lower directory: an image of no
                    // layers is empty.
                    lowers.push(empty);
                }
                match store::Overlay::mount(&rootfs, &lowers, &upper, &work) {
                    Ok(mount) => {
                        let root = RootDir::open(&rootfs).map_err(|e| Error::io(&rootfs, e))?;
                        write_config(&root, image, opts, staged.path())?;
                        drop(root);
                        staged.commit()?;
                        mount.keep();
                        lease.keep();
                        return Ok(());
                    }
                    Err(e) if auto => {
                        crate::fsroot::remove_all(&private).map_err(|e| Error::io(&private, e))?;
                        e
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        tracing::warn!("{refused}: making a copy instead");
        drop(lease);
    }
    let root = RootDir::open(&rootfs).map_err(|e| Error::io(&rootfs, e))?;
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
    write_config(&root, image, opts, staged.path())?;
    staged.commit()
}

/// Where an overlay bundle keeps its upper and work directories.
pub const OVERLAY_DIR: &str = ".overlay";

/// `config.json` in `bundle`, from the image config and the rootfs's
/// account files.
fn write_config(
    root: &RootDir,
    image: &ResolvedImage,
    opts: &BundleOptions,
    bundle: &Path,
) -> Result<()> {
    let passwd = read_accounts(root, "/etc/passwd")?;
    let group = read_accounts(root, "/etc/group")?;
    let spec = convert::convert(
        &image.config,
        &opts.profile,
        passwd.as_file(),
        group.as_file(),
        &opts.convert,
    )?;
    let config_path = bundle.join("config.json");
    let mut bytes = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Usage(e.to_string()))?;
    bytes.push(b'\n');
    std::fs::write(&config_path, bytes).map_err(|e| Error::io(&config_path, e))
}

/// A bundle's lease on stored layers, released unless the bundle was made.
struct Lease<'a> {
    store: &'a Store,
    bundle: &'a Path,
    kept: bool,
}

impl Lease<'_> {
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.kept {
            let _ = self.store.release(self.bundle);
        }
    }
}

/// `path` made absolute (against the working directory), its parent
/// resolved: the name a lease records.
fn absolute(path: &Path) -> Result<PathBuf> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = parent.canonicalize().map_err(|e| Error::io(parent, e))?;
    match path.file_name() {
        Some(name) => Ok(parent.join(name)),
        None => Err(Error::Usage(format!(
            "{}: not a directory name",
            escape::path(path)
        ))),
    }
}

/// Remove the bundle at `dir`, copy or overlay: unmount its rootfs, end
/// its lease in `store` (if one is given), and delete it. Refused for a
/// directory that is not a bundle (no `config.json`).
pub fn remove(dir: &Path, store: Option<&Store>) -> Result<()> {
    if !dir.join("config.json").is_file() {
        return Err(Error::Usage(format!(
            "{}: not a bundle (no config.json); nothing removed",
            escape::path(dir)
        )));
    }
    let rootfs = dir.join("rootfs");
    if store::is_mountpoint(&rootfs) {
        store::unmount(&rootfs)?;
    }
    if let Some(store) = store {
        store.release(&absolute(dir)?)?;
    }
    crate::fsroot::remove_all(dir).map_err(|e| Error::io(dir, e))
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
