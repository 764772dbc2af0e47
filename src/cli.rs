//! Command-line definitions: the modern single-reference commands and the
//! original occystrap's `fetch-to-*` forms.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::render::ProgressMode;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `key: value` lines
    Text,
    /// One JSON object
    Json,
}

/// Turn container images (registries, docker-save tarballs, OCI layouts,
/// the local engine) into OCI runtime bundles, docker-load tarballs,
/// copies, runs and image directories.
#[derive(Debug, Parser)]
#[command(name = "occystrap", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options for every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Platform to pick from a multi-platform image, as os/arch[/variant]
    /// (default: this machine's)
    #[arg(long, global = true, conflicts_with_all = ["os", "architecture", "variant"])]
    pub platform: Option<String>,
    /// Operating system to pick (original occystrap flag)
    #[arg(long, global = true)]
    pub os: Option<String>,
    /// CPU architecture to pick (original occystrap flag)
    #[arg(long, global = true)]
    pub architecture: Option<String>,
    /// CPU variant to pick, e.g. v7 or v8 (original occystrap flag)
    #[arg(long, global = true)]
    pub variant: Option<String>,
    /// Talk plain HTTP to the registry (loopback registries always do)
    #[arg(long, global = true)]
    pub insecure: bool,
    /// registries.conf to read instead of the containers tools' files
    /// (/etc/containers/registries.conf, its .d/ directory and
    /// ~/.config/containers/registries.conf)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "CONTAINERS_REGISTRIES_CONF"
    )]
    pub registries_conf: Option<PathBuf>,
    /// Read no registries.conf and no certs.d directory unless given
    /// (--registries-conf, --cert-dir): for hermetic runs
    #[arg(long, global = true, env = "OCCYSTRAP_NO_SYSTEM_CONFIG",
          value_parser = clap::builder::FalseyValueParser::new())]
    pub no_system_config: bool,
    /// CA certificates (*.crt) to trust for every registry, instead of
    /// /etc/containers/certs.d/HOST/ and /etc/docker/certs.d/HOST/
    #[arg(long, global = true, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Registry username (else the credentials files, else anonymous)
    #[arg(long, global = true, env = "OCCYSTRAP_USERNAME")]
    pub username: Option<String>,
    /// Credentials file (containers-auth.json format) read before the
    /// default ones
    #[arg(long, global = true, env = "REGISTRY_AUTH_FILE")]
    pub authfile: Option<std::path::PathBuf>,
    /// Registry password or token
    #[arg(
        long,
        global = true,
        env = "OCCYSTRAP_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// More detail on stderr (repeat for debug output)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Progress on stderr: `tty` (live bars), `plain` (a line per layer
    /// and a summary every few seconds), `json` (one event per line), `none`;
    /// `auto` is `tty` on a terminal, else `plain` (`none` with --quiet)
    #[arg(long, global = true, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Results on stdout as `text` or `json` (default: text; json for inspect)
    #[arg(long, global = true, value_enum)]
    pub format: Option<Format>,
    /// Retries of a registry request that failed transiently (connection
    /// error, timeout, 408, 429, 5xx, a download cut short)
    #[arg(long, global = true, value_name = "N", default_value_t = occystrap::registry::DEFAULT_RETRIES)]
    pub retries: u32,
    /// Seconds the registry may stay silent (connecting, answering, or
    /// mid-download) before the request counts as failed
    #[arg(long, global = true, value_name = "SECONDS",
          default_value_t = occystrap::registry::DEFAULT_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Milliseconds to wait before the first retry (doubling with each
    /// retry, with jitter)
    #[arg(long, global = true, value_name = "MS",
          default_value_t = occystrap::registry::DEFAULT_RETRY_DELAY.as_millis() as u64)]
    pub retry_delay: u64,
    /// Refuse a layer that decompresses to more than SIZE bytes (suffixes
    /// K, M, G, T: powers of 1024)
    #[arg(long, global = true, value_name = "SIZE", value_parser = occystrap::layer::parse_size)]
    pub max_layer_size: Option<u64>,
    /// Refuse a layer with more than N tar entries
    #[arg(long, global = true, value_name = "N")]
    pub max_entries: Option<u64>,
    /// Blob cache directory (default: $XDG_CACHE_HOME/occystrap or ~/.cache/occystrap)
    #[arg(long, global = true, value_name = "DIR", env = "OCCYSTRAP_CACHE_DIR")]
    pub cache: Option<PathBuf>,
    /// Blob downloads at once: with the cache, later layers download while
    /// earlier ones are applied
    #[arg(long, short = 'j', global = true, value_name = "N", default_value_t = occystrap::registry::DEFAULT_JOBS)]
    pub jobs: usize,
    /// Neither read nor fill the blob cache (wins over --cache)
    #[arg(long, global = true, env = "OCCYSTRAP_NO_CACHE",
          value_parser = clap::builder::FalseyValueParser::new())]
    pub no_cache: bool,
    /// The layer store for overlay bundles (default: `store/` in the cache
    /// directory)
    #[arg(long, global = true, env = "OCCYSTRAP_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write an image as a tarball that `docker load` accepts
    Export {
        /// Image: busybox:1.36, docker://host/app@sha256:..., docker-archive:FILE.tar,
        /// oci:DIR[:NAME], oci-archive:FILE.tar[:NAME]
        #[arg(value_name = "IMAGE")]
        reference: String,
        /// Output tarball (replaced atomically if it exists)
        output: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Build an OCI runtime bundle (config.json + rootfs/) that `runc run` starts
    Bundle {
        /// Image: busybox:1.36, docker://host/app@sha256:..., docker-archive:FILE.tar,
        /// oci:DIR[:NAME], oci-archive:FILE.tar[:NAME]
        #[arg(value_name = "IMAGE")]
        reference: String,
        /// Bundle directory to create
        dir: PathBuf,
        #[command(flatten)]
        bundle: BundleArgs,
        #[command(flatten)]
        rootfs: RootfsArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// Command and arguments to run instead of the image's Entrypoint + Cmd
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Run an image's command once with runc and remove everything after,
    /// as `docker run --rm` does with no daemon; exits with its status
    Run {
        /// Image: busybox:1.36, docker://host/app@sha256:..., docker-archive:FILE.tar,
        /// oci:DIR[:NAME], oci-archive:FILE.tar[:NAME], docker-daemon:NAME:TAG
        #[arg(value_name = "IMAGE")]
        reference: String,
        #[command(flatten)]
        run: RunArgs,
        /// Command and arguments to run instead of the image's Entrypoint + Cmd
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Show what an image name resolves to (digests, platform, layers) as JSON
    Inspect {
        /// Image (a reference, or docker-archive:, oci:, oci-archive:)
        #[arg(value_name = "IMAGE")]
        reference: String,
        /// Add a summary of the image config (user, entrypoint, env, labels...)
        #[arg(long)]
        config: bool,
        /// Add the config's history, each entry matched to its layer
        #[arg(long)]
        history: bool,
        /// Add each layer's index and the total size
        #[arg(long)]
        layers: bool,
    },
    /// Find files in an image's layers (nothing is unpacked): layer, digest,
    /// type, mode, size, path, and which later layer removes it
    Search {
        /// Image (a reference, or docker-archive:, oci:, oci-archive:)
        #[arg(value_name = "IMAGE")]
        reference: String,
        /// A glob over the whole path (`usr/bin/*sh`, `**/passwd`), or with
        /// --regex a regular expression found anywhere in it
        pattern: String,
        /// PATTERN is a regular expression
        #[arg(long)]
        regex: bool,
    },
    /// Validate an image end to end and report every problem found (exit 4
    /// if any): digests, diff_ids, structure, platform, history, and entries
    /// a bundle would refuse or confine (nothing is unpacked)
    Check {
        /// Image (a reference, or docker-archive:, oci:, oci-archive:)
        #[arg(value_name = "IMAGE")]
        reference: String,
        /// Check the index, manifest and config only; download no layer
        #[arg(long)]
        fast: bool,
    },
    /// Compare two images' final trees (nothing is unpacked): paths added
    /// (+), removed (-) and changed (~, with what changed)
    Diff {
        /// The image compared from
        a: String,
        /// The image compared to
        b: String,
    },
    /// Copy an image, blob for blob and every digest kept (with filters: a new
    /// image), to a registry, an OCI layout (added to one that exists), an
    /// oci-archive, a docker-archive or the engine
    Copy {
        /// Copy every platform of an index (registries, OCI layouts and archives)
        #[arg(long)]
        all: bool,
        /// Recompress layers (new layer and manifest digests; image IDs stay):
        /// gzip, zstd or none; by default each keeps its compression and digest
        #[arg(long, value_name = "gzip|zstd|none", value_parser = ["gzip", "zstd", "none"])]
        dest_compress: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Image to copy: a reference, docker://, docker-archive:, oci:, oci-archive:
        #[arg(value_name = "SOURCE")]
        source: String,
        /// Where to: docker://REF, oci:DIR[:NAME], oci-archive:FILE[:NAME],
        /// docker-archive:FILE[:NAME:TAG], docker-daemon:NAME:TAG
        #[arg(value_name = "DESTINATION")]
        destination: String,
    },
    /// fetch-to-tarfile [REGISTRY] IMAGE TAG TARFILE: the original form of `export`
    #[command(name = "fetch-to-tarfile")]
    FetchToTarfile {
        /// [REGISTRY] IMAGE TAG TARFILE
        #[arg(num_args = 3..=4, value_names = ["REGISTRY", "IMAGE", "TAG", "TARFILE"], required = true)]
        args: Vec<String>,
    },
    /// fetch-to-oci [REGISTRY] IMAGE TAG DIR: the original form of `bundle`
    #[command(name = "fetch-to-oci")]
    FetchToOci {
        /// [REGISTRY] IMAGE TAG DIR
        #[arg(num_args = 3..=4, value_names = ["REGISTRY", "IMAGE", "TAG", "DIR"], required = true)]
        args: Vec<String>,
        #[command(flatten)]
        bundle: BundleArgs,
        #[command(flatten)]
        rootfs: RootfsArg,
    },
    /// fetch-to-mounts [REGISTRY] IMAGE TAG DIR: the original form of
    /// `bundle --rootfs overlay` (root only; `occystrap remove DIR` unmounts)
    #[command(name = "fetch-to-mounts")]
    FetchToMounts {
        /// [REGISTRY] IMAGE TAG DIR
        #[arg(num_args = 3..=4, value_names = ["REGISTRY", "IMAGE", "TAG", "DIR"], required = true)]
        args: Vec<String>,
        #[command(flatten)]
        bundle: BundleArgs,
    },
    /// Write an image as a directory: the docker-save layout (tar it for
    /// `docker load`), shared between images with --use-unique-names
    Extract {
        /// Image: busybox:1.36, docker://host/app@sha256:..., docker-archive:FILE.tar,
        /// oci:DIR[:NAME], oci-archive:FILE.tar[:NAME]
        #[arg(value_name = "IMAGE")]
        reference: String,
        /// Directory to write (shared and updated in place with --use-unique-names)
        dir: PathBuf,
        #[command(flatten)]
        extract: ExtractArgs,
    },
    /// fetch-to-extracted [REGISTRY] IMAGE TAG DIR: the original form of `extract`
    #[command(name = "fetch-to-extracted")]
    FetchToExtracted {
        /// [REGISTRY] IMAGE TAG DIR
        #[arg(num_args = 3..=4, value_names = ["REGISTRY", "IMAGE", "TAG", "DIR"], required = true)]
        args: Vec<String>,
        #[command(flatten)]
        extract: ExtractArgs,
    },
    /// Rebuild one image's docker-load tarball from a --use-unique-names directory
    #[command(name = "recreate-image")]
    RecreateImage {
        /// Directory written by `extract --use-unique-names`
        dir: PathBuf,
        /// Image name, as pulled or in any equivalent spelling (busybox,
        /// library/busybox, docker.io/library/busybox, quay.io/org/app)
        image: String,
        /// Tag (or the digest the image was pulled by)
        tag: String,
        /// Output tarball (replaced atomically if it exists)
        output: PathBuf,
    },
    /// Manage the blob cache
    #[command(subcommand)]
    Cache(CacheCommand),
    /// The layer store that overlay bundles are made from
    #[command(subcommand)]
    Store(StoreCommand),
    /// Remove bundles: unmount an overlay rootfs, end its lease on the
    /// store's layers, and delete the directory
    Remove {
        /// Bundle directories (each must hold a config.json)
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Print a shell completion script (e.g. `occystrap completions bash >
    /// /etc/bash_completion.d/occystrap`)
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), as `make man` installs it
    #[command(hide = true)]
    Man,
}

/// `cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print the cache directory and how much it holds
    Info,
    /// Remove the least recently used blobs until at most SIZE stay cached
    Prune {
        /// What may stay (suffixes K, M, G, T); 0 empties the cache
        #[arg(long, value_name = "SIZE", default_value = "0", value_parser = occystrap::layer::parse_size)]
        max_size: u64,
    },
}

/// Options of `extract` and `fetch-to-extracted`.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Share config and layers (named by digest) between images in DIR, with
    /// one manifest-<image>-<tag>.json per image and a catalog.json
    #[arg(long = "use-unique-names", visible_alias = "unique-names")]
    pub unique_names: bool,
    /// Also extract each layer (whiteout files kept) and the merged filesystem
    #[arg(long)]
    pub expand: bool,
    /// Replace DIR if it exists (only once the new one is complete)
    #[arg(long, conflicts_with = "unique_names")]
    pub force: bool,
}

/// Filters that make a new image (`export`, `copy`; `bundle` takes only
/// `--exclude`).
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Set every entry's mtime, and the config's `created`, to EPOCH (seconds;
    /// default: $SOURCE_DATE_EPOCH, else 0): a new image, the same bytes every run
    #[arg(long, value_name = "EPOCH", num_args = 0..=1, require_equals = true,
          allow_negative_numbers = true)]
    pub normalize_timestamps: Option<Option<i64>>,
    /// Leave out entries whose path, or a directory above it, matches GLOB
    /// (`var/cache/**`, `**/*.pyc`; repeatable): a new image
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
}

/// The `--profile` of `run` when none is given: what `docker run` gives,
/// as root; otherwise (the docker profile maps no ids, and a user
/// namespace of one id has no `tty` group for devpts) a rootless one.
pub fn run_profile() -> &'static str {
    if occystrap::userns::privileged() {
        occystrap::bundle::convert::DOCKER
    } else {
        "auto"
    }
}

/// The `--profile` of `bundle` when none is given.
pub const BUNDLE_PROFILE: &str = "auto";

/// Options of `bundle`, `fetch-to-oci` and `fetch-to-mounts`.
#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Replace DIR if it exists (only once the new bundle is complete)
    #[arg(long)]
    pub force: bool,
    /// Allocate a terminal for the process (default: none, so `runc run` works unattended)
    #[arg(long, overrides_with = "no_tty")]
    pub tty: bool,
    /// Do not allocate a terminal (the default)
    #[arg(long)]
    pub no_tty: bool,
    #[command(flatten)]
    pub container: ContainerArgs,
}

/// How `bundle` and `fetch-to-oci` make rootfs/.
#[derive(Debug, Args)]
pub struct RootfsArg {
    /// rootfs/ as a copy of the layers, or an overlay mount of the layer
    /// store's (root only; `occystrap remove` unmounts); `auto`: overlay as
    /// root, else copy; `store-copy`: a copy (reflinked where the
    /// filesystem can) of the store's layers, independent of the store
    /// after (root only)
    #[arg(long, value_name = "copy|overlay|auto|store-copy", default_value = "copy",
          value_parser = ["copy", "overlay", "auto", "store-copy"])]
    pub rootfs: String,
}

/// What the container's process and root are, for `bundle`, `fetch-to-oci`
/// and `run`.
#[derive(Debug, Args)]
pub struct ContainerArgs {
    /// Container hostname (default: the profile's)
    #[arg(long)]
    pub hostname: Option<String>,
    /// Set an environment variable, overriding the image's (repeatable)
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Run as this user instead of the image's (name, uid, name:group, uid:gid, ...)
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Working directory (absolute) instead of the image's
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workdir: Option<String>,
    /// Mount the root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Base runtime config: `auto` (`default` as root, else `rootless`),
    /// `default`, `rootless`, `docker` (what `docker run` gives: its
    /// capabilities, seccomp profile and HOSTNAME), or a path to a
    /// config.json of your own (default: `auto` for bundle, `docker` for run)
    #[arg(long)]
    pub profile: Option<String>,
}

/// `store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Print each stored layer, its size and the bundles using it
    Info,
    /// Remove the layers no bundle uses (least recently stored first)
    /// until at most SIZE stay stored
    Prune {
        /// What may stay (suffixes K, M, G, T); 0 removes every unused layer
        #[arg(long, value_name = "SIZE", default_value = "0", value_parser = occystrap::layer::parse_size)]
        max_size: u64,
    },
}

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub container: ContainerArgs,
    /// Give the container a terminal (when stdin is one)
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Keep stdin open for the container (else it reads /dev/null)
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Read environment variables from FILE (KEY=VALUE lines; -e wins)
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Container id for the runtime (default: occystrap-<random>)
    #[arg(long)]
    pub name: Option<String>,
    /// Bind-mount a host path: HOST:CONTAINER[:ro] (repeatable; HOST must
    /// exist, relative to the current directory)
    #[arg(long, value_name = "HOST:CTR[:ro]")]
    pub volume: Vec<String>,
    /// `none` (a network namespace with only lo) or `host`
    #[arg(long, default_value = "none", value_parser = ["none", "host"])]
    pub network: String,
    /// OCI runtime: runc, crun or a path
    #[arg(long, default_value = occystrap::run::DEFAULT_RUNTIME)]
    pub runtime: String,
    /// Kill the container after SECONDS and exit 124 (`--timeout` is the
    /// registry's)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub time_limit: Option<u64>,
}

/// Split the original commands' `[REGISTRY] IMAGE TAG OUTPUT` arguments.
pub fn legacy_args(args: &[String]) -> (Option<&str>, &str, &str, &str) {
    match args {
        [registry, image, tag, out] => (Some(registry), image, tag, out),
        [image, tag, out] => (None, image, tag, out),
        // clap enforces 3..=4 values.
        _ => (None, "", "", ""),
    }
}
