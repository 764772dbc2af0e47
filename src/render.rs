//! The command's console: progress on stderr as bars (a terminal), plain
//! lines (a log), JSON events (an orchestrator) or nothing, and the
//! warnings that the results list. The library reports through
//! [`occystrap::progress`]; this module only draws.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use occystrap::progress::{Event, LayerCounter, ProgressSink};
use serde_json::json;

/// Version of the JSON event schema (the `v` of every event).
pub const SCHEMA_VERSION: u32 = 1;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// `tty` when stderr is a terminal, else `plain`
    Auto,
    /// Live bars
    Tty,
    /// A line per layer and a summary line at a steady interval
    Plain,
    /// One JSON event per line
    Json,
    /// Nothing but errors
    None,
}

/// The console one run writes to.
pub struct Console {
    mode: ProgressMode,
    multi: Option<MultiProgress>,
    state: Mutex<State>,
    warnings: Mutex<Vec<String>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    ticker: Mutex<Option<std::thread::JoinHandle<()>>>,
    finished: AtomicBool,
}

#[derive(Default)]
struct State {
    count: usize,
    total: u64,
    total_bar: Option<ProgressBar>,
    layers: BTreeMap<usize, Layer>,
    started: Option<Instant>,
}

struct Layer {
    digest: String,
    size: u64,
    counter: Arc<LayerCounter>,
    bar: Option<ProgressBar>,
    started: Instant,
    active: bool,
    /// What the last JSON progress event said.
    reported: (u64, u64),
}

impl State {
    fn read(&self) -> u64 {
        self.layers.values().map(|l| l.counter.read()).sum()
    }
    fn written(&self) -> u64 {
        self.layers.values().map(|l| l.counter.written()).sum()
    }
}

/// The first 12 hex digits of a digest, as Docker shows them.
fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.get(..12).unwrap_or(hex)
}

/// Seconds between summary lines (`plain`) or progress events (`json`);
/// `OCCYSTRAP_PROGRESS_INTERVAL_MS` changes it (for tests).
fn interval(mode: ProgressMode) -> Duration {
    let configured = std::env::var("OCCYSTRAP_PROGRESS_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    match mode {
        ProgressMode::Tty => Duration::from_millis(100),
        ProgressMode::Json => configured.unwrap_or(Duration::from_secs(1)),
        _ => configured.unwrap_or(Duration::from_secs(5)),
    }
}

impl Console {
    /// A console for `mode` (`auto` resolved against stderr).
    pub fn new(mode: ProgressMode) -> Arc<Console> {
        use std::io::IsTerminal;
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Tty,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        };
        // Drawn even when forced onto something that is not a terminal.
        let multi = (mode == ProgressMode::Tty).then(|| {
            MultiProgress::with_draw_target(ProgressDrawTarget::term_like_with_hz(
                Box::new(console::Term::buffered_stderr()),
                10,
            ))
        });
        Arc::new(Console {
            mode,
            multi,
            state: Mutex::new(State::default()),
            warnings: Mutex::new(Vec::new()),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
            ticker: Mutex::new(None),
            finished: AtomicBool::new(false),
        })
    }

    /// The mode, `auto` resolved.
    pub fn mode(&self) -> ProgressMode {
        self.mode
    }

    /// Write one JSON event line on stderr.
    fn json(&self, mut value: serde_json::Value) {
        if let Some(map) = value.as_object_mut() {
            map.insert("v".into(), json!(SCHEMA_VERSION));
        }
        let line = format!("{value}\n");
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    /// A line on stderr that does not tear the bars.
    fn line(&self, text: &str) {
        let write = || {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        };
        match &self.multi {
            Some(multi) => multi.suspend(write),
            None => write(),
        }
    }

    /// Write a log record (from `tracing`) without tearing the bars.
    pub fn log(&self, bytes: &[u8]) {
        let write = || {
            let _ = std::io::stderr().lock().write_all(bytes);
        };
        match &self.multi {
            Some(multi) => multi.suspend(write),
            None => write(),
        }
    }

    /// A warning: kept for the results, and a `warning` event in JSON mode.
    pub fn warning(&self, message: String) {
        if self.mode == ProgressMode::Json {
            self.json(json!({"event": "warning", "message": message}));
        }
        if let Ok(mut warnings) = self.warnings.lock() {
            warnings.push(message);
        }
    }

    /// The warnings so far.
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// The run failed with `message` (exit `code`): bars are cleared; in
    /// JSON mode, an `error` event.
    pub fn error(&self, message: &str, code: u8) {
        self.finish(false);
        if self.mode == ProgressMode::Json {
            self.json(json!({"event": "error", "message": message, "exit_code": code}));
        } else {
            let _ = writeln!(std::io::stderr().lock(), "occystrap: {message}");
        }
    }

    /// Stop drawing. Bars are cleared (and on success one summary line
    /// takes their place), so nothing half-drawn stays on the terminal.
    pub fn finish(&self, ok: bool) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let (stopped, wake) = &*self.stop;
            if let Ok(mut stopped) = stopped.lock() {
                *stopped = true;
            }
            wake.notify_all();
        }
        if let Some(ticker) = self.ticker.lock().ok().and_then(|mut t| t.take()) {
            let _ = ticker.join();
        }
        let Some(multi) = &self.multi else { return };
        let Ok(state) = self.state.lock() else { return };
        for bar in state
            .layers
            .values()
            .filter_map(|l| l.bar.as_ref())
            .chain(state.total_bar.as_ref())
        {
            bar.finish_and_clear();
        }
        let _ = multi.clear();
        if ok
            && !state.layers.is_empty()
            && let Some(started) = state.started
        {
            let _ = writeln!(
                std::io::stderr().lock(),
                "pulled {} layers: {} read, {} written in {:.1}s",
                state.count,
                HumanBytes(state.read()),
                HumanBytes(state.written()),
                started.elapsed().as_secs_f64()
            );
        }
    }

    /// Start the thread that samples the byte counters.
    fn start_ticker(self: &Arc<Self>) {
        if !matches!(
            self.mode,
            ProgressMode::Tty | ProgressMode::Plain | ProgressMode::Json
        ) {
            return;
        }
        let Ok(mut ticker) = self.ticker.lock() else {
            return;
        };
        if ticker.is_some() || self.finished.load(Ordering::SeqCst) {
            return;
        }
        let console = Arc::downgrade(self);
        let stop = self.stop.clone();
        let every = interval(self.mode);
        *ticker = Some(std::thread::spawn(move || {
            loop {
                {
                    let (stopped, wake) = &*stop;
                    let Ok(guard) = stopped.lock() else { return };
                    let Ok((guard, _)) = wake.wait_timeout_while(guard, every, |s| !*s) else {
                        return;
                    };
                    if *guard {
                        return;
                    }
                }
                match console.upgrade() {
                    Some(console) => console.tick(),
                    None => return,
                }
            }
        }));
    }

    /// Sample the counters: move the bars, print a summary line, or emit
    /// progress events.
    fn tick(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match self.mode {
            ProgressMode::Tty => {
                for layer in state.layers.values().filter(|l| l.active) {
                    if let Some(bar) = &layer.bar {
                        bar.set_position(layer.counter.read());
                    }
                }
                if let Some(bar) = &state.total_bar {
                    bar.set_position(state.read());
                }
            }
            ProgressMode::Plain => {
                let (read, total, written) = (state.read(), state.total, state.written());
                let secs = state
                    .started
                    .map_or(0.0, |s| s.elapsed().as_secs_f64())
                    .max(0.001);
                let percent = (read * 100).checked_div(total).unwrap_or(100);
                self.line(&format!(
                    "progress: {} / {} read ({percent}%), {} written, {}/s",
                    HumanBytes(read),
                    HumanBytes(total),
                    HumanBytes(written),
                    HumanBytes((read as f64 / secs) as u64)
                ));
            }
            ProgressMode::Json => {
                let mut events = Vec::new();
                for (index, layer) in state.layers.iter_mut().filter(|(_, l)| l.active) {
                    let now = (layer.counter.read(), layer.counter.written());
                    if now != layer.reported {
                        layer.reported = now;
                        events.push(json!({
                            "event": "progress", "index": index, "digest": layer.digest,
                            "size": layer.size, "read": now.0, "written": now.1,
                        }));
                    }
                }
                drop(state);
                for event in events {
                    self.json(event);
                }
            }
            _ => {}
        }
    }
}

/// The library's events, drawn.
pub struct Sink(pub Arc<Console>);

impl ProgressSink for Sink {
    fn event(&self, event: &Event) {
        let console = &self.0;
        match event {
            Event::Resolved {
                reference,
                manifest_digest,
                image_id,
                platform,
                layers,
            } => {
                let total: u64 = layers.iter().map(|l| l.size).sum();
                if let Ok(mut state) = console.state.lock() {
                    state.total = total;
                    state.started = Some(Instant::now());
                }
                match console.mode {
                    ProgressMode::Json => console.json(json!({
                        "event": "resolved", "reference": reference,
                        "manifest_digest": manifest_digest.to_string(),
                        "image_id": image_id.to_string(), "platform": platform,
                        "size": total,
                        "layers": layers.iter().map(|l| json!({
                            "digest": l.digest.to_string(), "diff_id": l.diff_id.to_string(),
                            "size": l.size,
                        })).collect::<Vec<_>>(),
                    })),
                    ProgressMode::Plain => console.line(&format!(
                        "{reference}: {} layer{}, {} ({platform}, image ID {image_id})",
                        layers.len(),
                        if layers.len() == 1 { "" } else { "s" },
                        HumanBytes(total)
                    )),
                    _ => {}
                }
            }
            Event::LayerStarted {
                index,
                count,
                digest,
                size,
                counter,
            } => {
                let digest = digest.to_string();
                let bar = console.multi.as_ref().map(|multi| {
                    let total = console.state.lock().ok().map(|mut state| {
                        let total = state.total;
                        state
                            .total_bar
                            .get_or_insert_with(|| {
                                let bar = multi.add(ProgressBar::new(total));
                                bar.set_style(bar_style(
                                    "{prefix:>22} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                                ));
                                bar.set_prefix("total");
                                bar
                            })
                            .clone()
                    });
                    let bar = ProgressBar::new(*size);
                    // Above the total, which stays last.
                    let bar = match total {
                        Some(total) => multi.insert_before(&total, bar),
                        None => multi.add(bar),
                    };
                    bar.set_style(bar_style(
                        "{prefix:>22} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                    ));
                    bar.set_prefix(format!("{}/{count} {}", index + 1, short(&digest)));
                    bar
                });
                if let Ok(mut state) = console.state.lock() {
                    state.count = *count;
                    state.started.get_or_insert_with(Instant::now);
                    state.layers.insert(
                        *index,
                        Layer {
                            digest: digest.clone(),
                            size: *size,
                            counter: counter.clone(),
                            bar,
                            started: Instant::now(),
                            active: true,
                            reported: (0, 0),
                        },
                    );
                }
                match console.mode {
                    ProgressMode::Json => console.json(json!({
                        "event": "layer_started", "index": index, "count": count,
                        "digest": digest, "size": size,
                    })),
                    ProgressMode::Plain => console.line(&format!(
                        "layer {}/{count} {} started ({})",
                        index + 1,
                        short(&digest),
                        HumanBytes(*size)
                    )),
                    _ => {}
                }
            }
            Event::Verified {
                index,
                digest,
                diff_id,
                read,
                written,
            } => {
                if let Ok(state) = console.state.lock() {
                    if let Some(bar) = state.layers.get(index).and_then(|l| l.bar.as_ref()) {
                        bar.set_position(*read);
                        bar.set_message(format!("verified, {} written", HumanBytes(*written)));
                    }
                    if let Some(total) = &state.total_bar {
                        total.set_position(state.read());
                    }
                }
                if console.mode == ProgressMode::Json {
                    console.json(json!({
                        "event": "verified", "index": index, "digest": digest.to_string(),
                        "diff_id": diff_id.to_string(), "read": read, "written": written,
                    }));
                }
            }
            Event::Applied {
                index,
                digest,
                written,
            } => {
                let mut line = None;
                if let Ok(mut state) = console.state.lock() {
                    let count = state.count;
                    if let Some(layer) = state.layers.get_mut(index) {
                        layer.active = false;
                        if let Some(bar) = &layer.bar {
                            bar.set_position(layer.counter.read());
                            bar.finish_with_message(format!("applied {}", HumanBytes(*written)));
                        }
                        line = Some(format!(
                            "layer {}/{count} {} done: {} read, {} written in {:.1}s",
                            index + 1,
                            short(&layer.digest),
                            HumanBytes(layer.counter.read()),
                            HumanBytes(*written),
                            layer.started.elapsed().as_secs_f64()
                        ));
                    }
                }
                match console.mode {
                    ProgressMode::Json => console.json(json!({
                        "event": "applied", "index": index, "digest": digest.to_string(),
                        "written": written,
                    })),
                    ProgressMode::Plain => {
                        if let Some(line) = line {
                            console.line(&line);
                        }
                    }
                    _ => {}
                }
            }
            Event::Done { reference, output } => {
                let (read, written, secs) = match console.state.lock() {
                    Ok(state) => (
                        state.read(),
                        state.written(),
                        state.started.map_or(0.0, |s| s.elapsed().as_secs_f64()),
                    ),
                    Err(_) => (0, 0, 0.0),
                };
                match console.mode {
                    ProgressMode::Json => console.json(json!({
                        "event": "done", "reference": reference,
                        "output": output.to_string_lossy(), "read": read, "written": written,
                        "seconds": (secs * 1000.0).round() / 1000.0,
                    })),
                    ProgressMode::Plain => console.line(&format!(
                        "done: {} in {secs:.1}s ({} read, {} written)",
                        output.display(),
                        HumanBytes(read),
                        HumanBytes(written)
                    )),
                    _ => {}
                }
            }
        }
        if matches!(event, Event::Resolved { .. } | Event::LayerStarted { .. }) {
            console.start_ticker();
        }
    }
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A `tracing` writer that goes through the console (so that log lines do
/// not tear the bars).
#[derive(Clone)]
pub struct LogWriter(pub Arc<Console>);

/// One log record, written when dropped.
pub struct LogRecord(Arc<Console>, Vec<u8>);

impl Write for LogRecord {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogRecord {
    fn drop(&mut self) {
        if !self.1.is_empty() {
            self.0.log(&self.1);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogRecord;
    fn make_writer(&'a self) -> LogRecord {
        LogRecord(self.0.clone(), Vec::new())
    }
}

/// A `tracing` layer that hands warnings (and error logs) to the console.
pub struct Warnings(pub Arc<Console>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        // (An error log comes just before the error itself: in JSON mode it
        // is a warning event rather than lost.)
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0.warning(message.0);
    }
}
