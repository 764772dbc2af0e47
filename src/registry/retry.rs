//! Which registry failures deserve another try, and how long to wait first.
//!
//! Connection errors, timeouts, 408, 429 and 5xx answers are retried with
//! exponential backoff and jitter, a bounded number of times, and never
//! sooner than the registry's `Retry-After`; anything else (404, 401, a
//! malformed answer) fails at once, since asking again would get the same
//! answer.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use super::transport::Failure;

/// No single wait between retries is longer than this.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// A registry that asks (`Retry-After`) for a longer wait than this is
/// not retried: failing says more than hanging silently for an hour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: fail at the first error).
    pub retries: u32,
    /// Wait before the first retry; it doubles with each further retry.
    pub base_delay: Duration,
    /// How long a request may go without an answer (connecting, headers,
    /// or the next bytes of a body) before it counts as failed.
    pub timeout: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1 for the first retry):
    /// `base_delay × 2^(attempt-1)`, doubled again when the registry asked us
    /// to slow down, capped at [`MAX_DELAY`], then jittered down by up to a
    /// half so that clients failing together do not retry together.
    pub fn backoff(&self, attempt: u32, rate_limited: bool) -> Duration {
        let exponent = attempt.saturating_sub(1) + u32::from(rate_limited);
        let factor = 2u32.saturating_pow(exponent.min(20));
        let full = self.base_delay.saturating_mul(factor).min(MAX_DELAY);
        full.mul_f64(0.5 + jitter() / 2.0)
    }

    /// The wait before retry number `attempt` after a failure judged
    /// `Retry`: the backoff, but never less than the registry asked for.
    pub fn delay(&self, attempt: u32, verdict: Verdict) -> Duration {
        match verdict {
            Verdict::Retry {
                rate_limited,
                after,
            } => self
                .backoff(attempt, rate_limited)
                .max(after.unwrap_or_default()),
            Verdict::Fail => Duration::ZERO,
        }
    }
}

/// A number in [0, 1) that differs from call to call (no `rand` needed:
/// std's hasher keys are random per instance).
fn jitter() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a failed request is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A transient failure.
    Retry {
        /// The registry asked us to slow down (429).
        rate_limited: bool,
        /// The registry asked us to wait this long (`Retry-After`).
        after: Option<Duration>,
    },
    /// Asking again would get the same answer.
    Fail,
}

/// One attempt at `op`, bounded by the policy's timeout.
pub async fn attempt<T, Fut>(policy: &RetryPolicy, op: Fut) -> Result<T, Failure>
where
    Fut: Future<Output = Result<T, Failure>>,
{
    tokio::time::timeout(policy.timeout, op)
        .await
        .unwrap_or(Err(Failure::Timeout(policy.timeout)))
}

/// Run `op` until it succeeds, fails for good, or the retries run out.
/// `what` names the request in the warnings logged before each retry.
pub async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut op: F,
) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut retry = 0;
    loop {
        let failure = match attempt(policy, op()).await {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        let verdict = failure.verdict();
        if verdict == Verdict::Fail || retry >= policy.retries {
            return Err(failure);
        }
        retry += 1;
        let delay = policy.delay(retry, verdict);
        tracing::warn!(
            "{what}: {failure}; retry {retry}/{} in {:.1} s",
            policy.retries,
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            retries: 3,
            base_delay: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn delays_double_with_jitter_and_a_cap() {
        let p = policy();
        for _ in 0..50 {
            let first = p.backoff(1, false);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = p.backoff(3, false);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let limited = p.backoff(1, true);
            assert!(limited >= Duration::from_millis(100) && limited <= Duration::from_millis(200));
            assert!(p.backoff(40, true) <= MAX_DELAY);
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(2, false)).collect();
        assert!(spread.len() > 1, "jitter varies");
    }

    #[test]
    fn retry_after_is_a_minimum() {
        let p = policy();
        let asked = |after| Verdict::Retry {
            rate_limited: true,
            after: Some(Duration::from_secs(after)),
        };
        assert_eq!(p.delay(1, asked(7)), Duration::from_secs(7));
        assert!(p.delay(1, asked(0)) >= Duration::from_millis(100));
    }

    fn server(code: u16) -> Failure {
        Failure::Status {
            code,
            message: "m".into(),
            codes: Vec::new(),
            retry_after: None,
        }
    }

    #[tokio::test]
    async fn retries_until_success_or_budget() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(1),
            ..policy()
        };
        let mut calls = 0;
        let got = with_retries(&p, "test", || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(server(503)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(got.unwrap(), 3);

        let mut calls = 0;
        let got: Result<(), _> = with_retries(&p, "test", || {
            calls += 1;
            async { Err(server(502)) }
        })
        .await;
        assert!(got.is_err());
        assert_eq!(calls, 4, "first attempt + 3 retries");

        let mut calls = 0;
        let got: Result<(), _> = with_retries(&p, "test", || {
            calls += 1;
            async { Err(server(404)) }
        })
        .await;
        assert!(got.is_err());
        assert_eq!(calls, 1, "404 is not retried");
    }

    #[tokio::test]
    async fn a_silent_request_times_out() {
        let p = RetryPolicy {
            retries: 0,
            timeout: Duration::from_millis(20),
            ..policy()
        };
        let got: Result<(), _> = with_retries(&p, "test", || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await;
        assert!(matches!(got, Err(Failure::Timeout(_))));
    }
}
