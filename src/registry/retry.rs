//! Which registry failures deserve another try, and how long to wait first.
//!
//! Connection errors, timeouts, 408, 429 and 5xx answers are retried with
//! exponential backoff and jitter, a bounded number of times; anything else
//! (404, 401, a malformed answer) fails at once, since asking again would
//! get the same answer.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciErrorCode};

/// No single wait between retries is longer than this.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

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
    pub fn delay(&self, attempt: u32, rate_limited: bool) -> Duration {
        let exponent = attempt.saturating_sub(1) + u32::from(rate_limited);
        let factor = 2u32.saturating_pow(exponent.min(20));
        let full = self.base_delay.saturating_mul(factor).min(MAX_DELAY);
        full.mul_f64(0.5 + jitter() / 2.0)
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
    /// A transient failure; `rate_limited` when the registry said 429.
    Retry {
        /// The registry asked us to slow down.
        rate_limited: bool,
    },
    /// Asking again would get the same answer.
    Fail,
}

/// Judge an error from oci-client.
pub fn verdict(err: &OciDistributionError) -> Verdict {
    use OciDistributionError as E;
    let retry = Verdict::Retry {
        rate_limited: false,
    };
    match err {
        E::RequestError(e) if e.is_builder() || e.is_redirect() => Verdict::Fail,
        E::RequestError(_) | E::IoError(_) => retry,
        E::ServerError { code: 429, .. } => Verdict::Retry { rate_limited: true },
        E::ServerError { code, .. } if *code == 408 || *code >= 500 => retry,
        E::RegistryError { envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|e| e.code == OciErrorCode::Toomanyrequests) =>
        {
            Verdict::Retry { rate_limited: true }
        }
        _ => Verdict::Fail,
    }
}

/// Why a request finally failed.
#[derive(Debug)]
pub enum Failure {
    /// The registry (or the connection to it) failed.
    Oci(OciDistributionError),
    /// No answer within the policy's timeout.
    Timeout(Duration),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Oci(e) => write!(f, "{e}"),
            Failure::Timeout(t) => write!(f, "no answer within {} s", t.as_secs_f64()),
        }
    }
}

impl Failure {
    /// Whether to try again.
    pub fn verdict(&self) -> Verdict {
        match self {
            Failure::Oci(e) => verdict(e),
            Failure::Timeout(_) => Verdict::Retry {
                rate_limited: false,
            },
        }
    }
}

/// One attempt at `op`, bounded by the policy's timeout.
pub async fn attempt<T, Fut>(policy: &RetryPolicy, op: Fut) -> Result<T, Failure>
where
    Fut: Future<Output = Result<T, OciDistributionError>>,
{
    match tokio::time::timeout(policy.timeout, op).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Failure::Oci(e)),
        Err(_) => Err(Failure::Timeout(policy.timeout)),
    }
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
    Fut: Future<Output = Result<T, OciDistributionError>>,
{
    let mut retry = 0;
    loop {
        let failure = match attempt(policy, op()).await {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        let Verdict::Retry { rate_limited } = failure.verdict() else {
            return Err(failure);
        };
        if retry >= policy.retries {
            return Err(failure);
        }
        retry += 1;
        let delay = policy.delay(retry, rate_limited);
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
            let first = p.delay(1, false);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = p.delay(3, false);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let limited = p.delay(1, true);
            assert!(limited >= Duration::from_millis(100) && limited <= Duration::from_millis(200));
            assert!(p.delay(40, true) <= MAX_DELAY);
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| p.delay(2, false)).collect();
        assert!(spread.len() > 1, "jitter varies");
    }

    fn server(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://r/v2/x".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn verdicts() {
        let retry = Verdict::Retry {
            rate_limited: false,
        };
        assert_eq!(verdict(&server(500)), retry);
        assert_eq!(verdict(&server(503)), retry);
        assert_eq!(verdict(&server(408)), retry);
        assert_eq!(verdict(&server(429)), Verdict::Retry { rate_limited: true });
        assert_eq!(verdict(&server(404)), Verdict::Fail);
        assert_eq!(verdict(&server(400)), Verdict::Fail);
        let unauthorized = OciDistributionError::UnauthorizedError { url: "u".into() };
        assert_eq!(verdict(&unauthorized), Verdict::Fail);
        let io = OciDistributionError::IoError(std::io::Error::other("reset"));
        assert_eq!(verdict(&io), retry);
        let envelope: oci_client::errors::OciEnvelope = serde_json::from_str(
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        )
        .unwrap();
        let limited = OciDistributionError::RegistryError {
            envelope,
            url: "u".into(),
        };
        assert_eq!(verdict(&limited), Verdict::Retry { rate_limited: true });
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
