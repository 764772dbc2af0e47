//! SIGINT and SIGTERM: stop promptly and leave nothing half-written.

use std::future::Future;
use std::time::Duration;

use occystrap::Error;
use tokio::signal::unix::{SignalKind, signal};

/// How long the work may take to unwind after a signal before it is dropped.
const GRACE: Duration = Duration::from_secs(10);

/// Run `work`; on SIGINT or SIGTERM cancel it through `cancel` (the token
/// it was given), let it unwind (its outputs remove their temporaries as
/// it does) and report [`Error::Cancelled`]. A second signal stops waiting.
pub async fn cancellable<F>(cancel: occystrap::Cancel, work: F) -> Result<(), Error>
where
    F: Future<Output = Result<(), Error>>,
{
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return work.await;
    };
    tokio::pin!(work);
    tokio::select! {
        result = &mut work => return result,
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    cancel.cancel();
    tracing::warn!("interrupted: stopping and removing partial output");
    tokio::select! {
        result = &mut work => if result.is_ok() {
            return Ok(());
        },
        _ = tokio::time::sleep(GRACE) => {}
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    Err(Error::Cancelled)
}

/// SIGINT and SIGTERM as they arrive, for `run`: it decides what each
/// means (cancel the pull, or forward to the container). Must be called
/// inside the runtime.
pub fn channel() -> tokio::sync::mpsc::UnboundedReceiver<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return rx;
    };
    tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                Some(()) = interrupt.recv() => Signal::SIGINT,
                Some(()) = terminate.recv() => Signal::SIGTERM,
                else => break,
            };
            if tx.send(received).is_err() {
                break;
            }
        }
    });
    rx
}
