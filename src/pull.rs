//! Fetch an image's layers as verified, uncompressed tar streams and hand
//! each, lowest first, to a consumer (unpacking, tar writing).
//!
//! Two threads share the work: a decoder thread downloads, checks the blob
//! digest, decompresses and checks the diff_id; the consumer thread parses
//! and writes. They are joined by a bounded channel, so memory stays flat,
//! both cores are busy, and the decoder moves on to the next layer while the
//! consumer finishes the previous one.

use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::cache::BlobCache;
use crate::cancel::Cancel;
use crate::digest::{Digest, Hasher};
use crate::image::{LayerRef, ResolvedImage};
use crate::layer::{LayerDecoder, LayerLimits};
use crate::progress::{CountingReader, Event, LayerCounter, Progress};
use crate::registry::BlobReader;
use crate::source::Source;
use crate::{Error, Result};

/// Size of the chunks passed from decoder to consumer.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight: 64 × 256 KiB = 16 MiB at most, so the decoder can run
/// ahead while the consumer is slowed by a stretch of many small files
/// (8 MiB lost ~5% of the overlap; 24 MiB gained ~2% more but took peak
/// RSS to 54 MiB, too close to the 64 MiB we promise).
const DEPTH: usize = 64;

/// Chunk buffers the consumer has emptied, for the decoder to fill again:
/// memory stays at what is in flight, without a fresh allocation (and
/// zeroing) per chunk.
#[derive(Clone, Default)]
struct Pool(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Pool {
    /// An empty buffer of `CHUNK` bytes.
    fn take(&self) -> Vec<u8> {
        let reused = self.0.lock().ok().and_then(|mut free| free.pop());
        let mut chunk = reused.unwrap_or_default();
        chunk.resize(CHUNK, 0);
        chunk
    }

    fn give(&self, chunk: Vec<u8>) {
        if chunk.capacity() >= CHUNK
            && let Ok(mut free) = self.0.lock()
            && free.len() < DEPTH
        {
            free.push(chunk);
        }
    }
}

enum Msg {
    Data(Vec<u8>),
    /// Every byte was delivered and verified.
    End,
    Failed(Error),
}

/// A layer's uncompressed tar stream as the consumer sees it. End of stream
/// is reported only after the decoder has verified the blob and this
/// reader the diff_id (hashed here, on the consumer's thread, so that the
/// two threads share the work; or known from the cache, see
/// [`crate::cache`]).
pub struct LayerReader {
    rx: Receiver<Msg>,
    chunk: Vec<u8>,
    pool: Pool,
    pos: usize,
    ended: bool,
    failure: Option<Error>,
    digest: String,
    diff_id: Digest,
    hasher: Option<Hasher>,
    /// Where to record the diff_id once it checked out.
    record: Option<(BlobCache, LayerRef)>,
    /// Position in the image, and where to report.
    index: usize,
    layer: LayerRef,
    counter: Arc<LayerCounter>,
    progress: Progress,
    cancel: Cancel,
}

impl LayerReader {
    /// The decoder's error, if the stream failed (integrity, network): a
    /// consumer's own error may only be its consequence.
    pub fn take_failure(&mut self) -> Option<Error> {
        self.failure.take()
    }

    /// The library error for an I/O error from reading this stream.
    pub fn classify(&mut self, err: io::Error) -> Error {
        self.take_failure().unwrap_or_else(|| Error::Registry {
            reference: format!("layer {}", self.digest),
            message: err.to_string(),
        })
    }

    /// Read to the verified end (the consumer may stop at the tar's end
    /// marker; trailing bytes still count for the digests).
    fn finish(&mut self) -> Result<()> {
        io::copy(self, &mut io::sink()).map_err(|e| self.classify(e))?;
        Ok(())
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            self.failure = Some(Error::Cancelled);
            return Err(io::Error::other("cancelled"));
        }
        while self.pos == self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Msg::Data(chunk)) => {
                    self.counter.add_written(chunk.len() as u64);
                    self.pool.give(std::mem::replace(&mut self.chunk, chunk));
                    self.pos = 0;
                }
                Ok(Msg::End) => {
                    self.ended = true;
                    if let Some(hasher) = self.hasher.take() {
                        if let Err(e) = hasher.check("layer diff_id", &self.diff_id) {
                            let message = e.to_string();
                            self.failure = Some(Error::Integrity(e));
                            return Err(io::Error::other(message));
                        }
                        if let Some((cache, layer)) = self.record.take() {
                            cache.remember_diff_id(
                                &layer.digest,
                                layer.size,
                                &layer.media_type,
                                &layer.diff_id,
                            );
                        }
                    }
                    self.progress.emit(|| Event::Verified {
                        index: self.index,
                        digest: self.layer.digest.clone(),
                        diff_id: self.layer.diff_id.clone(),
                        read: self.counter.read(),
                        written: self.counter.written(),
                    });
                }
                Ok(Msg::Failed(e)) => {
                    let message = e.to_string();
                    self.failure = Some(e);
                    return Err(io::Error::other(message));
                }
                Err(_) => {
                    return Err(io::Error::other(format!(
                        "layer {}: stream ended before it was verified",
                        self.digest
                    )));
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Stream every layer of `image` through `consume`, in order. `state` is
/// threaded through the calls and returned. Nothing is consumed unverified
/// without the failure being reported: a consumer error caused by a failed
/// check is reported as that check's error. Each layer's start,
/// verification and application are reported to `progress`.
pub async fn each_layer<S, F>(
    source: &Source,
    image: &ResolvedImage,
    progress: &Progress,
    state: S,
    consume: F,
) -> Result<S>
where
    S: Send + 'static,
    F: FnMut(&mut S, &LayerRef, &mut LayerReader) -> Result<()> + Send + 'static,
{
    let (to_consumer, readers) = sync_channel::<(LayerRef, LayerReader)>(1);
    let expected = image.layers.len();
    let consumer =
        tokio::task::spawn_blocking(move || consume_all(readers, expected, state, consume));
    let produced = produce(source, image, progress, to_consumer).await;
    let consumed = consumer
        .await
        .map_err(|e| Error::Usage(format!("internal error: layer consumer failed: {e}")))?;
    // A producer failure explains a consumer that stopped short.
    produced?;
    consumed
}

fn consume_all<S, F>(
    readers: Receiver<(LayerRef, LayerReader)>,
    expected: usize,
    mut state: S,
    mut consume: F,
) -> Result<S>
where
    F: FnMut(&mut S, &LayerRef, &mut LayerReader) -> Result<()>,
{
    for _ in 0..expected {
        let Ok((layer, mut reader)) = readers.recv() else {
            return Err(Error::Usage("layer download stopped".into()));
        };
        if let Err(e) = consume(&mut state, &layer, &mut reader) {
            if let Some(failure) = reader.take_failure() {
                return Err(failure);
            }
            // A layer refused as malformed may be one damaged on the way:
            // its digests, checked at the end of the stream, tell which.
            if let Error::Unpack { source, .. } = &e
                && source.is_integrity()
                && let Err(upstream) = reader.finish()
                && upstream.kind() == crate::error::ErrorKind::Integrity
            {
                return Err(upstream);
            }
            return Err(e);
        }
        reader.finish()?;
        reader.progress.emit(|| Event::Applied {
            index: reader.index,
            digest: layer.digest.clone(),
            written: reader.counter.written(),
        });
    }
    Ok(state)
}

async fn produce(
    source: &Source,
    image: &ResolvedImage,
    progress: &Progress,
    to_consumer: SyncSender<(LayerRef, LayerReader)>,
) -> Result<()> {
    let count = image.layers.len();
    let mut prefetch = Prefetch::start(source, image);
    let pool = Pool::default();
    for (i, layer) in image.layers.iter().enumerate() {
        if source.cancel().is_cancelled() {
            return Err(Error::Cancelled);
        }
        let blob = prefetch.open(i, source, layer).await?;
        tracing::debug!(
            "layer {}/{count} {} ({})",
            i + 1,
            layer.digest,
            human_size(layer.size)
        );
        // A recorded diff_id holds for these bytes, and the decoder checks
        // the blob's digest before it reports the end: no need to hash the
        // uncompressed layer again.
        let cache = source.cache().cloned();
        let known = cache
            .as_ref()
            .and_then(|c| c.diff_id(&layer.digest, &layer.media_type))
            .is_some_and(|d| d == layer.diff_id);
        if known {
            tracing::debug!("layer {}: diff_id known from the cache", layer.digest);
        }
        let counter = Arc::new(LayerCounter::default());
        progress.emit(|| Event::LayerStarted {
            index: i,
            count,
            digest: layer.digest.clone(),
            size: layer.size,
            counter: counter.clone(),
        });
        let (tx, rx) = sync_channel(DEPTH);
        let reader = LayerReader {
            rx,
            chunk: Vec::new(),
            pool: pool.clone(),
            pos: 0,
            ended: false,
            failure: None,
            digest: layer.digest.to_string(),
            diff_id: layer.diff_id.clone(),
            hasher: (!known).then(|| layer.diff_id.hasher()),
            record: cache.filter(|_| !known).map(|c| (c, layer.clone())),
            index: i,
            layer: layer.clone(),
            counter: counter.clone(),
            progress: progress.clone(),
            cancel: source.cancel().clone(),
        };
        if to_consumer.send((layer.clone(), reader)).is_err() {
            // The consumer gave up; its error is the one to report.
            return Ok(());
        }
        let layer = layer.clone();
        let (limits, pool) = (source.layer_limits(), pool.clone());
        let blob = CountingReader {
            inner: blob,
            counter,
        };
        let cancel = source.cancel().clone();
        tokio::task::spawn_blocking(move || decode(blob, &layer, limits, &pool, &tx, &cancel))
            .await
            .map_err(|e| Error::Usage(format!("internal error: layer decoder failed: {e}")))?;
    }
    Ok(())
}

/// With a cache, later layers are downloaded into it, or their cached
/// copies verified (lowest first, at most `jobs` at once counting the layer
/// being streamed), while earlier ones are applied; the layer loop then
/// reads the verified copies. Dropping this stops downloads nobody will use.
pub(crate) struct Prefetch {
    tasks: Vec<Option<tokio::task::JoinHandle<Option<File>>>>,
    stop: Arc<AtomicBool>,
}

impl Prefetch {
    pub(crate) fn start(source: &Source, image: &ResolvedImage) -> Prefetch {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks: Vec<Option<tokio::task::JoinHandle<Option<File>>>> = vec![None];
        // Only a registry's blobs are worth fetching ahead: into the cache.
        if let Source::Registry(registry) = source
            && registry.cache().is_some()
            && registry.jobs() > 1
        {
            let permits = Arc::new(tokio::sync::Semaphore::new(registry.jobs() - 1));
            for layer in image.layers.iter().skip(1) {
                let (registry, layer, stop, permits) = (
                    registry.clone(),
                    layer.clone(),
                    stop.clone(),
                    permits.clone(),
                );
                tasks.push(Some(tokio::spawn(async move {
                    // The semaphore is fair: layers start lowest first.
                    let _permit = permits.acquire_owned().await.ok()?;
                    registry.prefetch(&layer.digest, layer.size, stop).await
                })));
            }
        }
        Prefetch { tasks, stop }
    }

    /// Layer `i` (`layer`), to read: its copy verified in the cache once
    /// its download or check has finished, else a download from `source`.
    pub(crate) async fn open(
        &mut self,
        i: usize,
        source: &Source,
        layer: &crate::image::LayerRef,
    ) -> Result<crate::registry::BlobReader> {
        let task = self.tasks.get_mut(i).and_then(Option::take);
        let prefetched = match task {
            Some(task) => task.await.ok().flatten(),
            None => None,
        };
        match prefetched {
            Some(file) => Ok(source.cached_blob("layer", &layer.digest, layer.size, file)),
            None => source.open_blob("layer", &layer.digest, layer.size).await,
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks.iter().flatten() {
            task.abort();
        }
    }
}

/// Decompress and verify one layer into the channel. Failures go down the
/// channel too: the consumer reports them.
fn decode(
    blob: CountingReader<BlobReader>,
    layer: &LayerRef,
    limits: LayerLimits,
    pool: &Pool,
    tx: &SyncSender<Msg>,
    cancel: &Cancel,
) {
    let digest = layer.digest.to_string();
    let mut decoder = match LayerDecoder::new(blob, &layer.media_type, &digest, limits) {
        Ok(d) => d,
        Err(e) => {
            let _ = tx.send(Msg::Failed(Error::Registry {
                reference: format!("layer {digest}"),
                message: e.to_string(),
            }));
            return;
        }
    };
    loop {
        if cancel.is_cancelled() {
            let _ = tx.send(Msg::Failed(Error::Cancelled));
            return;
        }
        let mut chunk = pool.take();
        let n = match read_full(&mut decoder, &mut chunk) {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Msg::Failed(decoder.classify(e)));
                return;
            }
        };
        if n == 0 {
            break;
        }
        chunk.truncate(n);
        if tx.send(Msg::Data(chunk)).is_err() {
            return;
        }
    }
    let _ = tx.send(match decoder.finish() {
        Ok(()) => Msg::End,
        Err(e) => Msg::Failed(e),
    });
}

/// Fill `buf` as far as the stream allows (fewer, larger chunks).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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
    use super::*;

    #[test]
    fn the_pool_reuses_at_most_depth_buffers() {
        let pool = Pool::default();
        let mut first = pool.take();
        assert_eq!(first.len(), CHUNK);
        first.truncate(10);
        let address = first.as_ptr();
        pool.give(first);
        let again = pool.take();
        assert_eq!(
            (again.as_ptr(), again.len()),
            (address, CHUNK),
            "reused, full size"
        );
        for _ in 0..DEPTH + 5 {
            pool.give(vec![0; CHUNK]);
        }
        pool.give(vec![0; 1]);
        assert_eq!(
            pool.0.lock().unwrap().len(),
            DEPTH,
            "bounded; small buffers dropped"
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_234_567), "1.2 MB");
        assert_eq!(human_size(3_000_000_000), "3.0 GB");
    }
}
