//! The `occystrap` command: parse arguments, call the library, map errors
//! to exit codes.

mod cli;
mod render;
mod signals;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use occystrap::error::ErrorKind;
use occystrap::{Error, ImageName, ImageRef, Platform, PullOptions, RegistryOptions};

use std::path::Path;

use cli::{
    BundleArgs, CacheCommand, Cli, Command, ContainerArgs, ExtractArgs, FilterArgs, Format, Global,
    RunArgs, StoreCommand,
};
use occystrap::bundle::convert::{self, ConvertOptions};
use occystrap::bundle::{BundleOptions, Rootfs};
use occystrap::cache::BlobCache;
use occystrap::export::extracted::ExtractOptions;
use occystrap::filter::Filter;
use occystrap::layer::LayerLimits;
use occystrap::store::Store;
use render::{Console, ProgressMode};
use std::sync::Arc;

/// Exit codes: documented in the README.
fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Usage => 2,
        ErrorKind::NotFound => 3,
        ErrorKind::Integrity => 4,
        ErrorKind::Io => 5,
        ErrorKind::Cancelled => 130,
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // `docker run`'s habits: `--timeout` here is the registry's.
    let run_timeout = matches
        .subcommand_matches("run")
        .is_some_and(|m| m.value_source("timeout") == Some(clap::parser::ValueSource::CommandLine));
    // Rootless `run`: root of a user namespace of one's own can mount the
    // layer store's overlays. Before any thread exists, as the kernel asks.
    let userns = match cli.command {
        Command::Run { .. } if !nix::unistd::geteuid().is_root() => {
            Some(occystrap::userns::enter())
        }
        _ => None,
    };
    let mode = match cli.global.progress {
        ProgressMode::Auto if cli.global.quiet => ProgressMode::None,
        mode => mode,
    };
    let console = Console::new(mode);
    init_logging(&cli.global, &console);
    if let Some(Err(e)) = userns {
        tracing::debug!("no user namespace ({e}): the rootfs is a copy");
    }
    if let Command::Run { run, .. } = &cli.command
        && run_timeout
        && run.time_limit.is_none()
        && !cli.global.quiet
    {
        // Said as run's other notes are, whatever the progress mode.
        eprintln!(
            "occystrap: --timeout is how long the registry may stay silent; --time-limit SECONDS bounds the container"
        );
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("occystrap: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let cancel = occystrap::Cancel::new();
    let result = match cli.command {
        // Signals go to the container while it lives: `run` handles them.
        Command::Run {
            reference,
            run,
            command,
        } => runtime.block_on(run_image(
            &cli.global,
            &reference,
            run,
            command,
            console.clone(),
            cancel,
        )),
        command => {
            let cli = Cli {
                global: cli.global,
                command,
            };
            let work = run(cli, console.clone(), cancel.clone());
            runtime
                .block_on(signals::cancellable(cancel, work))
                .map(|()| 0)
        }
    };
    match result {
        Ok(code) => {
            console.finish(true);
            ExitCode::from(code)
        }
        Err(e) => {
            let code = exit_code(e.kind());
            console.error(&e.to_string(), code);
            ExitCode::from(code)
        }
    }
}

fn init_logging(global: &Global, console: &Arc<Console>) {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::prelude::*;
    let level = if global.quiet || (console.mode() == ProgressMode::None && global.verbose == 0) {
        tracing::Level::ERROR
    } else if global.verbose >= 2 {
        tracing::Level::DEBUG
    } else if global.verbose == 1 || std::io::stderr().is_terminal() {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    // Colour only for a person at a terminal who has not asked for none.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // JSON mode: stderr is the event stream (warnings become events).
    let text = (console.mode() != ProgressMode::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .without_time()
            .with_ansi(colour)
            .with_writer(render::LogWriter(console.clone()))
            .with_filter(LevelFilter::from_level(level))
    });
    tracing_subscriber::registry()
        .with(text)
        .with(render::Warnings(console.clone()).with_filter(LevelFilter::WARN))
        .init();
}

async fn run(cli: Cli, console: Arc<Console>, cancel: occystrap::Cancel) -> Result<(), Error> {
    match &cli.command {
        Command::Completions { shell } => {
            return print_generated(|out| {
                clap_complete::generate(*shell, &mut Cli::command(), "occystrap", out);
                Ok(())
            });
        }
        Command::Man => {
            return print_generated(|out| clap_mangen::Man::new(Cli::command()).render(out));
        }
        _ => {}
    }
    let mut opts = pull_options(&cli.global)?;
    opts.cancel = cancel;
    if console.mode() != ProgressMode::None {
        opts.progress = occystrap::progress::Progress::new(Arc::new(render::Sink(console.clone())));
    }
    let out = Results {
        format: cli.global.format,
        console,
    };
    match cli.command {
        Command::Export {
            reference,
            output,
            filter,
        } => {
            let name = ImageName::parse(&reference)?;
            let filter = make_filter(&filter)?;
            let image = occystrap::export_tarball(&name, &output, &filter, &opts).await?;
            out.image(&image, &output)?;
        }
        Command::FetchToTarfile { args } => {
            let (registry, image, tag, output) = cli::legacy_args(&args);
            let name = ImageName::Registry(ImageRef::from_parts(registry, image, tag)?);
            let output = std::path::PathBuf::from(output);
            let filter = Filter::default();
            let image = occystrap::export_tarball(&name, &output, &filter, &opts).await?;
            out.image(&image, &output)?;
        }
        Command::Bundle {
            reference,
            dir,
            bundle,
            rootfs,
            filter,
            command,
        } => {
            let name = ImageName::parse(&reference)?;
            if filter.normalize_timestamps.is_some() {
                return Err(Error::Usage(
                    "bundle: --normalize-timestamps makes a new image, and a bundle is not an image; only --exclude applies to a bundle".into(),
                ));
            }
            let filter = make_filter(&filter)?;
            let how = (&bundle, rootfs.rootfs.as_str());
            let image = make_bundle(&name, &dir, how, filter, command, &cli.global, &opts).await?;
            out.image(&image, &dir)?;
        }
        Command::FetchToOci {
            args,
            bundle,
            rootfs,
        } => {
            let how = (&bundle, rootfs.rootfs.as_str());
            legacy_bundle(&args, how, &cli.global, &opts, &out).await?;
        }
        Command::FetchToMounts { args, bundle } => {
            legacy_bundle(&args, (&bundle, "overlay"), &cli.global, &opts, &out).await?;
        }
        Command::Extract {
            reference,
            dir,
            extract,
        } => {
            let name = ImageName::parse(&reference)?;
            let image = make_extracted(&name, &dir, &extract, &opts).await?;
            out.image(&image, &dir)?;
        }
        Command::FetchToExtracted { args, extract } => {
            let (registry, image, tag, dir) = cli::legacy_args(&args);
            let name = ImageName::Registry(ImageRef::from_parts(registry, image, tag)?);
            let image = make_extracted(&name, Path::new(dir), &extract, &opts).await?;
            out.image(&image, Path::new(dir))?;
        }
        Command::RecreateImage {
            dir,
            image,
            tag,
            output,
        } => {
            let reference = ImageRef::from_parts(None, &image, &tag)?;
            let id = occystrap::recreate_image(&dir, &reference, &output)?;
            out.recreated(&reference, &id, &output)?;
        }
        Command::Cache(command) => cache_command(command, &cli.global)?,
        Command::Store(command) => store_command(command, &cli.global)?,
        Command::Remove { dirs } => {
            // A bundle made without the store (a copy) has no lease.
            let store = layer_store(&cli.global).ok();
            for dir in &dirs {
                occystrap::bundle::remove(dir, store.as_ref())?;
            }
        }
        Command::Completions { .. } | Command::Man | Command::Run { .. } => {}
        Command::Search {
            reference,
            pattern,
            regex,
        } => {
            let name = ImageName::parse(&reference)?;
            let pattern = match regex {
                true => occystrap::search::Pattern::regex(&pattern)?,
                false => occystrap::search::Pattern::glob(&pattern)?,
            };
            let (image, hits) = occystrap::search_image(&name, pattern, &opts).await?;
            out.found(&image, &hits)?;
        }
        Command::Check { reference, fast } => {
            let name = ImageName::parse(&reference)?;
            let report = occystrap::check_image(&name, fast, &opts).await?;
            out.checked(&report)?;
            if !report.is_sound() {
                return Err(Error::Unsound {
                    reference: report.reference.clone(),
                    problems: report.errors(),
                });
            }
        }
        Command::Diff { a, b } => {
            let (a, b) = (ImageName::parse(&a)?, ImageName::parse(&b)?);
            let (image_a, image_b, changes) = occystrap::diff_images(&a, &b, &opts).await?;
            out.differences(&image_a, &image_b, &changes)?;
        }
        Command::Copy {
            all,
            dest_compress,
            filter,
            source,
            destination,
        } => {
            let (from, to) = (ImageName::parse(&source)?, ImageName::parse(&destination)?);
            use occystrap::layer::Compression;
            let compress = dest_compress.map(|c| match c.as_str() {
                "gzip" => Compression::Gzip,
                "zstd" => Compression::Zstd,
                _ => Compression::None,
            });
            let filter = make_filter(&filter)?;
            let options = occystrap::copy::CopyOptions {
                all,
                compress,
                filter,
            };
            let copied = occystrap::copy_image(&from, &to, options, &opts).await?;
            out.copied(&from, &to, &copied)?;
        }
        Command::Inspect {
            reference,
            config,
            history,
            layers,
        } => {
            let name = ImageName::parse(&reference)?;
            let (_, image) = occystrap::resolve(&name, &opts).await?;
            out.inspected(&image, config, history, layers)?;
        }
    }
    Ok(())
}

async fn make_extracted(
    name: &ImageName,
    dir: &Path,
    args: &ExtractArgs,
    opts: &PullOptions,
) -> Result<occystrap::ResolvedImage, Error> {
    let extract = ExtractOptions {
        unique_names: args.unique_names,
        expand: args.expand,
        replace: args.force,
    };
    occystrap::extract_image(name, dir, &extract, opts).await
}

/// `fetch-to-oci` and `fetch-to-mounts`: `bundle` in the original form.
async fn legacy_bundle(
    args: &[String],
    how: (&BundleArgs, &str),
    global: &Global,
    opts: &PullOptions,
    out: &Results,
) -> Result<(), Error> {
    let (registry, image, tag, dir) = cli::legacy_args(args);
    let name = ImageName::Registry(ImageRef::from_parts(registry, image, tag)?);
    let dir = Path::new(dir);
    let image = make_bundle(&name, dir, how, Filter::default(), Vec::new(), global, opts).await?;
    out.image(&image, dir)
}

/// A bundle at `dir`, with its rootfs made as `how.1` says
/// (`copy`, `overlay`, `auto`, `store-copy`).
async fn make_bundle(
    name: &ImageName,
    dir: &Path,
    how: (&BundleArgs, &str),
    filter: Filter,
    command: Vec<String>,
    global: &Global,
    opts: &PullOptions,
) -> Result<occystrap::ResolvedImage, Error> {
    let (args, rootfs) = how;
    let root = nix::unistd::geteuid().is_root();
    let rootfs = match rootfs {
        "overlay" if !root => {
            return Err(Error::Usage(
                "--rootfs overlay: a bundle's overlay mount must outlive occystrap, which needs root (an unprivileged user's mounts end with its process); `occystrap run` uses the layer store rootless, and --rootfs copy works as any user".into(),
            ));
        }
        "overlay" => Rootfs::Overlay(layer_store(global)?),
        "store-copy" if !root => {
            return Err(Error::Usage(
                "--rootfs store-copy: read-only overlay mounts of the layer store need root; --rootfs copy works as any user".into(),
            ));
        }
        "store-copy" => Rootfs::StoreCopy(layer_store(global)?),
        // Stored layers are unfiltered: an --exclude bundle is a copy.
        "auto" if root && filter.is_empty() => Rootfs::Auto(layer_store(global)?),
        _ => Rootfs::Copy,
    };
    let tty = args.tty && !args.no_tty;
    let env = args.container.env.clone();
    let mut bundle = bundle_options(&args.container, cli::BUNDLE_PROFILE, tty, env, command)?;
    bundle.replace = args.force;
    bundle.rootfs = rootfs;
    bundle.unpack.filter = Arc::new(filter);
    occystrap::create_bundle(name, dir, &bundle, opts).await
}

/// The bundle `args` describe, from `default_profile` unless `--profile`.
fn bundle_options(
    args: &ContainerArgs,
    default_profile: &str,
    tty: bool,
    env: Vec<String>,
    command: Vec<String>,
) -> Result<BundleOptions, Error> {
    let choice = args.profile.as_deref().unwrap_or(default_profile);
    let profile = convert::profile(choice)?;
    Ok(BundleOptions {
        profile,
        convert: ConvertOptions {
            tty,
            hostname: args.hostname.clone(),
            env,
            read_only: args.read_only,
            args: (!command.is_empty()).then_some(command),
            user: args.user.clone(),
            hostname_env: choice == convert::DOCKER,
            workdir: args.workdir.clone(),
        },
        ..BundleOptions::default()
    })
}

/// `run`: the container's exit status, or an error before it started.
async fn run_image(
    global: &Global,
    reference: &str,
    args: RunArgs,
    command: Vec<String>,
    console: Arc<Console>,
    cancel: occystrap::Cancel,
) -> Result<u8, Error> {
    use occystrap::run::{BindMount, Network, RunOptions};
    // First, so that no signal falls between two handlers.
    let mut signals = signals::channel();
    let mut opts = pull_options(global)?;
    opts.cancel = cancel;
    if console.mode() != ProgressMode::None {
        opts.progress = occystrap::progress::Progress::new(Arc::new(render::Sink(console.clone())));
    }
    let name = ImageName::parse(reference)?;
    // Docker's order: the files, then -e, the last of a name winning.
    let mut env = Vec::new();
    for file in &args.env_file {
        env.extend(occystrap::run::read_env_file(file)?);
    }
    env.extend(args.container.env.iter().cloned());
    let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    let mounts = args
        .volume
        .iter()
        .map(|spec| BindMount::parse(spec, &cwd))
        .collect::<Result<Vec<_>, _>>()?;
    let mut bundle = bundle_options(&args.container, cli::run_profile(), args.tty, env, command)?;
    // `docker run` sets HOSTNAME whatever the profile (rootless too).
    bundle.convert.hostname_env = true;
    // An overlay of stored layers where it can be mounted: a second run of
    // an image unpacks nothing.
    if nix::unistd::geteuid().is_root() {
        bundle.rootfs = match layer_store(global) {
            Ok(store) => Rootfs::Auto(store),
            // The default store cannot be made (no writable home, as for
            // `nobody`): a copy, as with no store at all. A store asked for
            // is an error.
            Err(e) if global.store.is_none() && global.cache.is_none() => {
                tracing::warn!("{e}: no layer store, the rootfs is a copy");
                Rootfs::Copy
            }
            Err(e) => return Err(e),
        };
    }
    let options = RunOptions {
        bundle,
        runtime: args.runtime,
        name: args.name,
        mounts,
        network: match args.network.as_str() {
            "host" => Network::Host,
            _ => Network::None,
        },
        time_limit: args.time_limit.map(std::time::Duration::from_secs),
        stdin: args.interactive,
    };
    let prepare = occystrap::run::prepare(&name, &options, &opts);
    let prepared = occystrap::run::cancel_on_signal(prepare, &mut signals, &opts.cancel).await?;
    // The container's output follows: no progress display over it.
    console.finish(true);
    // Said whatever the log level: what the container sees depends on it.
    if !global.quiet {
        for volume in prepared.volumes() {
            eprintln!(
                "occystrap: the image's volume {} is an empty directory for this run",
                occystrap::escape::bytes(volume.as_bytes())
            );
        }
    }
    let exit = prepared.run(&mut signals).await?;
    if exit == occystrap::run::Exit::TimedOut {
        eprintln!(
            "occystrap: the container was killed: it ran past the time limit of {}s",
            args.time_limit.unwrap_or_default()
        );
    }
    Ok(exit.code())
}

/// The filter `--normalize-timestamps` and `--exclude` ask for.
fn make_filter(args: &FilterArgs) -> Result<Filter, Error> {
    let normalize = match args.normalize_timestamps {
        None => None,
        Some(Some(epoch)) => Some(epoch),
        Some(None) => Some(occystrap::filter::default_epoch()?),
    };
    let exclude = args
        .exclude
        .iter()
        .map(|glob| occystrap::search::Pattern::glob(glob))
        .collect::<Result<_, _>>()?;
    Ok(Filter { normalize, exclude })
}

/// What a command made, printed on stdout as `--format` says.
struct Results {
    format: Option<Format>,
    console: Arc<Console>,
}

impl Results {
    /// An image written to `output`.
    fn image(&self, image: &occystrap::ResolvedImage, output: &Path) -> Result<(), Error> {
        self.print(
            occystrap::inspect::result(image, Some(output), self.console.warnings()),
            Format::Text,
        )
    }

    /// `copy`: what the destination now holds.
    fn copied(
        &self,
        from: &ImageName,
        to: &ImageName,
        copied: &occystrap::copy::Copied,
    ) -> Result<(), Error> {
        self.print(
            serde_json::json!({
                "reference": from.to_string(),
                "output": to.to_string(),
                "manifestDigest": copied.manifest.digest.to_string(),
                "manifestMediaType": copied.manifest.media_type,
                "images": copied.images,
                "blobsWritten": copied.written,
                "blobsPresent": copied.present,
                "warnings": self.console.warnings(),
            }),
            Format::Text,
        )
    }

    /// `search`: a line per match, or JSON.
    fn found(
        &self,
        image: &occystrap::ResolvedImage,
        hits: &[occystrap::search::Hit],
    ) -> Result<(), Error> {
        use occystrap::escape;
        self.console.finish(true);
        let text = |raw: &[u8]| String::from_utf8_lossy(raw).into_owned();
        if self.format == Some(Format::Json) {
            let value = serde_json::json!({
                "reference": image.name,
                "manifestDigest": image.manifest.digest.to_string(),
                "imageID": image.config_digest.to_string(),
                "matches": hits.iter().map(|h| serde_json::json!({
                    "layer": h.layer,
                    "digest": h.digest,
                    "path": text(h.path.as_os_str().as_encoded_bytes()),
                    "type": text(&[h.kind.flag()]),
                    "mode": format!("{:04o}", h.mode),
                    "size": h.size,
                    "link": h.link.as_deref().map(text),
                    "removedBy": h.removed_by,
                })).collect::<Vec<_>>(),
                "warnings": self.console.warnings(),
            });
            return print_result(&serde_json::to_string_pretty(&value).unwrap_or_default());
        }
        let lines: Vec<String> = hits
            .iter()
            .map(|h| {
                let link = h
                    .link
                    .as_deref()
                    .map(|l| format!(" -> {}", escape::bytes(l)))
                    .unwrap_or_default();
                let removed = h
                    .removed_by
                    .map(|n| format!("  (removed by layer {n})"))
                    .unwrap_or_default();
                format!(
                    "{} {} {} {:04o} {:>10} {}{link}{removed}",
                    h.layer,
                    h.digest,
                    escape::bytes(&[h.kind.flag()]),
                    h.mode,
                    h.size,
                    escape::path(&h.path)
                )
            })
            .collect();
        if lines.is_empty() {
            return Ok(());
        }
        print_result(&lines.join("\n"))
    }

    /// `check`: a line per problem and a summary, or JSON.
    fn checked(&self, report: &occystrap::check::Report) -> Result<(), Error> {
        use occystrap::escape;
        self.console.finish(true);
        if self.format == Some(Format::Json) {
            let text =
                |p: &Path| String::from_utf8_lossy(p.as_os_str().as_encoded_bytes()).into_owned();
            let value = serde_json::json!({
                "reference": report.reference,
                "manifestDigest": report.manifest_digest,
                "imageID": report.image_id,
                "sound": report.is_sound(),
                "problems": report.problems.iter().map(|p| serde_json::json!({
                    "kind": p.kind.code(),
                    "severity": p.kind.severity(),
                    "layer": p.layer,
                    "digest": p.digest,
                    "path": p.path.as_deref().map(text),
                    "message": p.message,
                })).collect::<Vec<_>>(),
                "layersChecked": report.layers_checked,
                "warnings": self.console.warnings(),
            });
            return print_result(&serde_json::to_string_pretty(&value).unwrap_or_default());
        }
        let mut lines: Vec<String> = report
            .problems
            .iter()
            .map(|p| {
                let mut line = format!("{} {}", p.kind.severity(), p.kind.code());
                if let (Some(n), Some(digest)) = (p.layer, &p.digest) {
                    line.push_str(&format!(" layer {n} {digest}"));
                }
                if let Some(path) = &p.path {
                    line.push_str(&format!(" {}", escape::path(path)));
                }
                format!("{line}: {}", p.message)
            })
            .collect();
        let checked = format!("{} layers checked", report.layers_checked);
        let reference = escape::bytes(report.reference.as_bytes());
        let notes = report.problems.len() - report.errors();
        lines.push(match (report.errors(), notes) {
            (0, 0) => format!("{reference}: sound ({checked})"),
            (0, n) => format!("{reference}: sound, with {n} note(s) ({checked})"),
            (e, n) => format!("{reference}: {e} problem(s), {n} note(s) ({checked})"),
        });
        print_result(&lines.join("\n"))
    }

    /// `diff`: a line per path, or JSON.
    fn differences(
        &self,
        a: &occystrap::ResolvedImage,
        b: &occystrap::ResolvedImage,
        changes: &[(std::path::PathBuf, occystrap::diff::Change)],
    ) -> Result<(), Error> {
        use occystrap::diff::{Change, Node};
        use occystrap::escape;
        self.console.finish(true);
        let describe = |old: &Node, new: &Node, what: &[&str]| -> String {
            what.iter()
                .map(|w| match *w {
                    "mode" => format!("mode {:04o} → {:04o}", old.mode, new.mode),
                    "owner" => format!("owner {}:{} → {}:{}", old.uid, old.gid, new.uid, new.gid),
                    "type" => format!(
                        "type {} → {}",
                        escape::bytes(&[old.kind.flag()]),
                        escape::bytes(&[new.kind.flag()])
                    ),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.format == Some(Format::Json) {
            let rows: Vec<serde_json::Value> = changes
                .iter()
                .map(|(path, change)| {
                    let path = String::from_utf8_lossy(path.as_os_str().as_encoded_bytes());
                    match change {
                        Change::Added(_) => serde_json::json!({"path": path, "change": "added"}),
                        Change::Removed(_) => {
                            serde_json::json!({"path": path, "change": "removed"})
                        }
                        Change::Changed(_, _, what) => {
                            serde_json::json!({"path": path, "change": "changed", "what": what})
                        }
                    }
                })
                .collect();
            let value = serde_json::json!({
                "a": a.name,
                "b": b.name,
                "changes": rows,
                "warnings": self.console.warnings(),
            });
            return print_result(&serde_json::to_string_pretty(&value).unwrap_or_default());
        }
        let lines: Vec<String> = changes
            .iter()
            .map(|(path, change)| {
                let path = escape::path(path);
                match change {
                    Change::Added(_) => format!("+ {path}"),
                    Change::Removed(_) => format!("- {path}"),
                    Change::Changed(old, new, what) => {
                        format!("~ {path} ({})", describe(old, new, what))
                    }
                }
            })
            .collect();
        if lines.is_empty() {
            return Ok(());
        }
        print_result(&lines.join("\n"))
    }

    /// `inspect`: JSON unless asked otherwise, with the sections asked for.
    fn inspected(
        &self,
        image: &occystrap::ResolvedImage,
        config: bool,
        history: bool,
        layers: bool,
    ) -> Result<(), Error> {
        let shown = occystrap::inspect::Shown {
            config,
            history,
            layers,
        };
        let mut value = occystrap::inspect::inspect(image, shown);
        if let Some(list) = value["warnings"].as_array_mut() {
            let mut warnings: Vec<serde_json::Value> = self
                .console
                .warnings()
                .into_iter()
                .map(Into::into)
                .collect();
            warnings.append(list);
            *list = warnings;
        }
        self.print(value, Format::Json)
    }

    /// `recreate-image`: built from a directory, so no manifest.
    fn recreated(
        &self,
        reference: &ImageRef,
        id: &occystrap::digest::Digest,
        output: &Path,
    ) -> Result<(), Error> {
        let value = serde_json::json!({
            "reference": reference.to_string(),
            "manifestDigest": null,
            "imageID": id.to_string(),
            "platform": null,
            "layers": [],
            "output": output.to_string_lossy(),
            "warnings": self.console.warnings(),
        });
        self.print(value, Format::Text)
    }

    fn print(&self, value: serde_json::Value, default: Format) -> Result<(), Error> {
        // The bars go before the result takes their place on a terminal.
        self.console.finish(true);
        match self.format.unwrap_or(default) {
            Format::Json => print_result(&serde_json::to_string_pretty(&value).unwrap_or_default()),
            Format::Text => print_result(&result_text(&value)),
        }
    }
}

/// `key: value` lines of a result.
fn result_text(value: &serde_json::Value) -> String {
    let field = |key: &str| match value.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let mut lines = Vec::new();
    for (key, label) in [
        ("reference", "reference"),
        ("indexDigest", "index"),
        ("manifestDigest", "manifest"),
        ("imageID", "image ID"),
        ("platform", "platform"),
        ("output", "output"),
    ] {
        if let Some(v) = field(key) {
            lines.push(format!("{label}: {v}"));
        }
    }
    for layer in value["layers"].as_array().into_iter().flatten() {
        lines.push(format!(
            "layer: {} diff_id {} size {}",
            layer["digest"].as_str().unwrap_or_default(),
            layer["diffID"].as_str().unwrap_or_default(),
            layer["size"]
        ));
    }
    for warning in value["warnings"].as_array().into_iter().flatten() {
        lines.push(format!("warning: {}", warning.as_str().unwrap_or_default()));
    }
    lines.join("\n")
}

/// `--registries-conf` alone, else the containers tools' files unless
/// `--no-system-config`.
fn registries_conf(global: &Global) -> Result<occystrap::registry::RegistriesConf, Error> {
    use occystrap::registry::RegistriesConf;
    match (&global.registries_conf, global.no_system_config) {
        (Some(file), _) => RegistriesConf::load(std::slice::from_ref(file)),
        (None, true) => Ok(RegistriesConf::default()),
        (None, false) => {
            let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
            RegistriesConf::load_default(home.as_deref())
        }
    }
}

/// The cache from `--cache`, else the default one; none with `--no-cache`
/// or when there is no home directory to put it in.
fn blob_cache(global: &Global) -> Result<Option<BlobCache>, Error> {
    if global.no_cache {
        return Ok(None);
    }
    match global.cache.clone().or_else(BlobCache::default_dir) {
        Some(dir) => BlobCache::open(&dir).map(Some),
        None => Ok(None),
    }
}

/// `--store`, else `store/` in the cache directory.
fn layer_store(global: &Global) -> Result<Store, Error> {
    let dir = global
        .store
        .clone()
        .or_else(|| global.cache.as_ref().map(|c| c.join("store")))
        .or_else(Store::default_dir)
        .ok_or_else(|| Error::Usage("no layer store: give --store DIR".into()))?;
    Store::open(&dir)
}

fn store_command(command: StoreCommand, global: &Global) -> Result<(), Error> {
    let store = layer_store(global)?;
    match command {
        StoreCommand::Info => {
            let layers = store.info()?;
            let mut lines: Vec<String> = layers
                .iter()
                .map(|l| {
                    let users: Vec<String> = l
                        .bundles
                        .iter()
                        .map(|b| occystrap::escape::path(b).to_string())
                        .collect();
                    format!(
                        "{} {} bytes, used by {}",
                        l.chain_id,
                        l.bytes,
                        if users.is_empty() {
                            "no bundle".into()
                        } else {
                            users.join(", ")
                        }
                    )
                })
                .collect();
            let total: u64 = layers.iter().map(|l| l.bytes).sum();
            lines.push(format!(
                "{}: {} layers, {total} bytes",
                occystrap::escape::path(store.root()),
                layers.len()
            ));
            print_result(&lines.join("\n"))?;
        }
        StoreCommand::Prune { max_size } => {
            let report = store.prune(max_size)?;
            print_result(&format!(
                "{}: removed {} layers ({} bytes); {} layers in use stay",
                occystrap::escape::path(store.root()),
                report.removed,
                report.freed,
                report.leased
            ))?;
        }
    }
    Ok(())
}

fn cache_command(command: CacheCommand, global: &Global) -> Result<(), Error> {
    let cache =
        blob_cache(global)?.ok_or_else(|| Error::Usage("no cache: give --cache DIR".into()))?;
    match command {
        CacheCommand::Info => {
            let (blobs, bytes) = cache.usage()?;
            print_result(&format!(
                "{}: {blobs} blobs, {bytes} bytes",
                cache.root().display()
            ))?;
        }
        CacheCommand::Prune { max_size } => {
            let report = cache.prune(max_size)?;
            print_result(&format!(
                "{}: removed {} blobs ({} bytes); {} bytes stay",
                cache.root().display(),
                report.removed,
                report.freed,
                report.kept
            ))?;
        }
    }
    Ok(())
}

/// Print a result on stdout. A reader that went away (`inspect | head`)
/// ends the program quietly, with the status of a process killed by
/// SIGPIPE, as other command-line tools end.
fn print_result(text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::exit(128 + libc::SIGPIPE)
        }
        Err(e) => Err(Error::io("standard output", e)),
    }
}

/// Print what `generate` writes (a completion script, the manual page) as
/// a result.
fn print_generated(
    generate: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> Result<(), Error> {
    let mut text = Vec::new();
    generate(&mut text).map_err(|e| Error::io("standard output", e))?;
    print_result(String::from_utf8_lossy(&text).trim_end())
}

/// Platform from `--platform`, or the host's with `--os/--architecture/--variant` applied.
fn pull_options(global: &Global) -> Result<PullOptions, Error> {
    let platform = match &global.platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::from_parts(
            global.os.as_deref(),
            global.architecture.as_deref(),
            global.variant.as_deref(),
        ),
    };
    let credentials = match (&global.username, &global.password) {
        (Some(u), Some(p)) => Some((u.clone(), p.clone())),
        (None, None) => None,
        _ => {
            return Err(Error::Usage("--username and --password go together".into()));
        }
    };
    Ok(PullOptions {
        registry: RegistryOptions {
            insecure: global.insecure,
            credentials,
            authfile: global.authfile.clone(),
            retries: global.retries,
            timeout: std::time::Duration::from_secs(global.timeout),
            retry_delay: std::time::Duration::from_millis(global.retry_delay),
            layer_limits: LayerLimits {
                max_size: global.max_layer_size,
                max_entries: global.max_entries,
            },
            cache: blob_cache(global)?,
            jobs: global.jobs,
            registries_conf: registries_conf(global)?,
            certs_d: if global.no_system_config {
                Vec::new()
            } else {
                RegistryOptions::default().certs_d
            },
            cert_dir: global.cert_dir.clone(),
        },
        platform,
        platform_required: global.platform.is_some()
            || global.os.is_some()
            || global.architecture.is_some()
            || global.variant.is_some(),
        progress: occystrap::progress::Progress::default(),
        cancel: occystrap::Cancel::new(),
    })
}
