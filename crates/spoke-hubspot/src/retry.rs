//! When and how long to wait before repeating a failed HubSpot call.

use std::time::Duration;

use crate::error::Error;

/// Bounded, jittered exponential backoff.
///
/// Retried: 429 (except the daily policy), 423, 477, 500, 502, 503, 504, network errors and timeouts.
/// Never retried: 400, 401, 403, 404, 409 and other 4xx (repeating cannot change HubSpot's answer).
/// Creates (non-idempotent endpoints) are not retried after outcomes where HubSpot may already have
/// applied them (500/502/504, timeout, connection lost after sending) unless
/// [`RetryPolicy::retry_ambiguous_writes`] is set; 429/423/477/503 are retried for every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Maximum number of attempts including the first (1 disables retries).
    pub max_attempts: u32,
    /// No retry is started if it would end later than this after the first attempt began.
    pub max_elapsed: Duration,
    /// Delay cap of the first retry; doubled each further retry.
    pub base_delay: Duration,
    /// Upper bound of a single delay computed by the backoff (Retry-After may ask for more).
    pub max_delay: Duration,
    /// Minimum wait after a 423 Locked (HubSpot asks for at least two seconds).
    pub locked_min_delay: Duration,
    /// Also retry creates after ambiguous failures (risking duplicates); default false.
    pub retry_ambiguous_writes: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            max_elapsed: Duration::from_secs(120),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            locked_min_delay: Duration::from_secs(2),
            retry_ambiguous_writes: false,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Backoff of the `retry`-th retry (1-based) with "equal jitter": half fixed, half random, so
    /// concurrent workers spread out but never retry immediately. `jitter` is in `[0, 1]`.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let cap = self
            .base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = cap / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// Delay before the `retry`-th retry after `error`, honouring `Retry-After` and the 423 minimum.
    pub fn delay_for(&self, retry: u32, error: &Error, jitter: f64) -> Duration {
        let mut delay = self.backoff(retry, jitter);
        if let Error::Api(api) = error {
            if let Some(after) = api.retry_after {
                delay = delay.max(after);
            }
            if api.status == 423 {
                delay = delay.max(self.locked_min_delay);
            }
        }
        delay
    }

    /// Whether another attempt may start, given attempts made and time already spent.
    pub fn allows(&self, attempts_made: u32, elapsed: Duration, next_delay: Duration) -> bool {
        attempts_made < self.max_attempts && elapsed + next_delay <= self.max_elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            max_elapsed: Duration::from_secs(10),
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            locked_min_delay: Duration::from_secs(2),
            retry_ambiguous_writes: false,
        }
    }

    #[test]
    fn backoff_doubles_and_caps_with_jitter_bounds() {
        let p = policy();
        // (retry, jitter, expected)
        let cases = [
            (1, 0.0, 50),
            (1, 1.0, 100),
            (2, 0.0, 100),
            (2, 1.0, 200),
            (3, 0.5, 300),
            (4, 1.0, 800),
            (5, 1.0, 1000),
            (40, 1.0, 1000),
            (5, 0.0, 500),
        ];
        for (retry, jitter, ms) in cases {
            assert_eq!(
                p.backoff(retry, jitter),
                Duration::from_millis(ms),
                "retry {retry} jitter {jitter}"
            );
        }
    }

    #[test]
    fn retry_after_and_locked_minimum_win_over_backoff() {
        let p = policy();
        let err = |status, after: Option<u64>| {
            Error::from(ApiError::from_response(
                "x",
                status,
                after.map(Duration::from_secs),
                b"{}",
            ))
        };
        let cases = [
            (err(503, None), Duration::from_millis(100)),
            (err(477, Some(3)), Duration::from_secs(3)),
            (err(429, Some(1)), Duration::from_secs(1)),
            (err(423, None), Duration::from_secs(2)),
            (err(423, Some(5)), Duration::from_secs(5)),
        ];
        for (e, want) in cases {
            assert_eq!(p.delay_for(1, &e, 1.0), want, "{e}");
        }
    }

    #[test]
    fn attempts_and_elapsed_bound_retries() {
        let p = policy();
        assert!(p.allows(1, Duration::ZERO, Duration::from_secs(1)));
        assert!(!p.allows(4, Duration::ZERO, Duration::ZERO));
        assert!(!p.allows(1, Duration::from_secs(9), Duration::from_secs(2)));
        assert!(!RetryPolicy::none().allows(1, Duration::ZERO, Duration::ZERO));
    }
}
