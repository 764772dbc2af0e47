//! Stopping one operation from elsewhere (a signal handler, an
//! orchestrator's own timeout): each operation is given a [`Cancel`], and
//! everything it started (downloads, decoders, uploads, prefetches) checks
//! that one, not a flag shared by the whole process, so cancelling one
//! operation leaves the others running, and a new one starts afresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A cancellation token: clones share it.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token not cancelled yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Ask the operations holding this token to stop: layer streams fail
    /// with [`crate::Error::Cancelled`] at their next read, and each
    /// operation removes what it had started writing before it returns.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_token_and_others_are_apart() {
        let (a, other) = (Cancel::new(), Cancel::new());
        let b = a.clone();
        b.cancel();
        assert!(a.is_cancelled() && b.is_cancelled());
        assert!(!other.is_cancelled());
    }
}
