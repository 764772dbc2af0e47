//! Progress events: what a pull is doing, for a front end to render (bars,
//! log lines, JSON for orchestrators) or ignore.
//!
//! A [`Progress`] sink is given in [`crate::PullOptions`]; the default
//! does nothing. The pipeline reports, in order:
//! [`Event::Resolved`], then for each layer (lowest first)
//! [`Event::LayerStarted`] → [`Event::Verified`] → [`Event::Applied`], then
//! [`Event::Done`]. Layers overlap: layer `n + 1` may start before layer
//! `n` is applied.
//!
//! Bytes are not reported event by event: [`Event::LayerStarted`] carries a
//! [`LayerCounter`] that the pipeline bumps once per chunk (one relaxed
//! atomic add per read of the decompressor's input and per 256 KiB chunk
//! handed to the consumer), and a renderer samples it as often as it likes.
//! Warnings are logged through `tracing` at level WARN (aggregated: one per
//! kind, with the first few paths).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Digest;

/// Byte counts of one layer, updated as it streams.
#[derive(Debug, Default)]
pub struct LayerCounter {
    read: AtomicU64,
    written: AtomicU64,
}

impl LayerCounter {
    /// Compressed bytes read so far: downloaded, or read from the cache.
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Uncompressed bytes handed to the consumer so far (applied to the
    /// root filesystem, or written to the output).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub(crate) fn add_read(&self, n: u64) {
        self.read.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_written(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
    }
}

/// One layer as [`Event::Resolved`] lists it.
#[derive(Debug, Clone)]
pub struct LayerSummary {
    /// Blob digest (compressed).
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Blob size in bytes (compressed).
    pub size: u64,
}

/// What happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// The reference resolved to one image; its layers are next.
    Resolved {
        /// The reference as given, normalised.
        reference: String,
        /// Digest of the image manifest.
        manifest_digest: Digest,
        /// The image ID: digest of the config.
        image_id: Digest,
        /// `os/arch[/variant]` of the image.
        platform: String,
        /// The layers, lowest first.
        layers: Vec<LayerSummary>,
    },
    /// A layer began to stream.
    LayerStarted {
        /// 0-based position, lowest layer first.
        index: usize,
        /// Number of layers.
        count: usize,
        /// Blob digest.
        digest: Digest,
        /// Blob size (what [`LayerCounter::read`] counts towards).
        size: u64,
        /// Its live byte counts.
        counter: Arc<LayerCounter>,
    },
    /// Every byte of a layer arrived and its digest and diff_id checked out.
    Verified {
        /// 0-based position.
        index: usize,
        /// Blob digest.
        digest: Digest,
        /// Digest of the uncompressed tar.
        diff_id: Digest,
        /// Compressed bytes read.
        read: u64,
        /// Uncompressed bytes.
        written: u64,
    },
    /// A layer was fully applied (or written to the output).
    Applied {
        /// 0-based position.
        index: usize,
        /// Blob digest.
        digest: Digest,
        /// Uncompressed bytes.
        written: u64,
    },
    /// The output is complete.
    Done {
        /// The reference.
        reference: String,
        /// What was written.
        output: PathBuf,
    },
}

/// Receives [`Event`]s, from any thread.
pub trait ProgressSink: Send + Sync {
    /// Called as each event happens; should return quickly.
    fn event(&self, event: &Event);
}

/// Where progress events go: nowhere by default.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn ProgressSink>>);

impl Progress {
    /// Events go to `sink`.
    pub fn new(sink: Arc<dyn ProgressSink>) -> Progress {
        Progress(Some(sink))
    }

    /// Report `event` (built only when someone listens).
    pub fn emit(&self, event: impl FnOnce() -> Event) {
        if let Some(sink) = &self.0 {
            sink.event(&event());
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(sink)"
        } else {
            "Progress(none)"
        })
    }
}

/// A reader that counts what passes through it into a [`LayerCounter`]:
/// one atomic add per `read` call (the decompressor reads in large
/// buffers).
pub(crate) struct CountingReader<R> {
    pub inner: R,
    pub counter: Arc<LayerCounter>,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.add_read(n as u64);
        Ok(n)
    }
}
