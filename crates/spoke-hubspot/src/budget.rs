//! The portal budget hook: asked before every HubSpot API call so a portal's shared allowance is respected.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{Error, RateLimitPolicy, Result};

/// Which HubSpot limit a call counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// Ordinary API calls (ten-secondly rolling limit).
    Standard,
    /// CRM search calls (additionally limited per second).
    Search,
}

impl CallKind {
    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Standard => "standard",
            CallKind::Search => "search",
        }
    }
}

/// Grants permission to make calls against a portal's HubSpot allowance.
///
/// The connection service implements a distributed version shared by all replicas; [`LocalBudget`] is
/// the in-process default and [`NoBudget`] disables budgeting (tests, unlimited sandboxes).
#[async_trait]
pub trait Budget: Send + Sync + 'static {
    /// Waits until `n` calls of `kind` may be made against `portal` (called before every attempt).
    async fn acquire(&self, portal: u64, kind: CallKind, n: u32) -> Result<()>;
    /// Reports that HubSpot answered 429 anyway, so the budget can back off the whole portal.
    fn throttled(&self, portal: u64, policy: &RateLimitPolicy);
}

/// A budget that always grants immediately.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBudget;

#[async_trait]
impl Budget for NoBudget {
    async fn acquire(&self, _portal: u64, _kind: CallKind, _n: u32) -> Result<()> {
        Ok(())
    }

    fn throttled(&self, _portal: u64, _policy: &RateLimitPolicy) {}
}

/// Limits of a [`LocalBudget`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Calls per ten seconds per portal (OAuth apps: 110).
    pub standard_per_10s: u32,
    /// Search calls per second per portal (5).
    pub search_per_second: u32,
    /// How long to hold back a portal's calls after HubSpot reported a 429.
    pub throttle_pause: Duration,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        Self {
            standard_per_10s: 110,
            search_per_second: 5,
            throttle_pause: Duration::from_secs(1),
        }
    }
}

/// An in-process GCRA budget per portal (governor), for single-replica use and as a fallback.
///
/// Search calls are charged to both the search and the standard limiter: counting them twice is the
/// safe side when HubSpot's accounting of search against the rolling limit is unknown.
pub struct LocalBudget {
    standard: DefaultKeyedRateLimiter<u64>,
    search: DefaultKeyedRateLimiter<u64>,
    limits: BudgetLimits,
    paused_until: Mutex<HashMap<u64, Instant>>,
}

impl std::fmt::Debug for LocalBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBudget")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for LocalBudget {
    fn default() -> Self {
        // HubSpot's OAuth-app limits: 110 per 10 s (one permit every 1/11 s), search 5 per second.
        const STANDARD: NonZeroU32 = NonZeroU32::new(110).unwrap();
        const STANDARD_PER_SECOND: NonZeroU32 = NonZeroU32::new(11).unwrap();
        const SEARCH: NonZeroU32 = NonZeroU32::new(5).unwrap();
        Self::from_quotas(
            Quota::per_second(STANDARD_PER_SECOND).allow_burst(STANDARD),
            Quota::per_second(SEARCH),
            BudgetLimits::default(),
        )
    }
}

impl LocalBudget {
    /// Creates a budget with the given limits; zero limits are rejected.
    pub fn new(limits: BudgetLimits) -> Result<Self> {
        let standard = NonZeroU32::new(limits.standard_per_10s)
            .ok_or_else(|| Error::InvalidRequest("standard_per_10s must be > 0".into()))?;
        let search = NonZeroU32::new(limits.search_per_second)
            .ok_or_else(|| Error::InvalidRequest("search_per_second must be > 0".into()))?;
        let period = Duration::from_secs(10) / standard.get();
        let standard_quota = Quota::with_period(period)
            .ok_or_else(|| Error::InvalidRequest("standard period is zero".into()))?
            .allow_burst(standard);
        Ok(Self::from_quotas(
            standard_quota,
            Quota::per_second(search),
            limits,
        ))
    }

    fn from_quotas(standard: Quota, search: Quota, limits: BudgetLimits) -> Self {
        Self {
            standard: RateLimiter::keyed(standard),
            search: RateLimiter::keyed(search),
            limits,
            paused_until: Mutex::new(HashMap::new()),
        }
    }

    fn pause_remaining(&self, portal: u64) -> Option<Duration> {
        let map = self.paused_until.lock().ok()?;
        let until = *map.get(&portal)?;
        until.checked_duration_since(Instant::now())
    }
}

#[async_trait]
impl Budget for LocalBudget {
    async fn acquire(&self, portal: u64, kind: CallKind, n: u32) -> Result<()> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        if let Some(wait) = self.pause_remaining(portal) {
            tokio::time::sleep(wait).await;
        }
        if kind == CallKind::Search {
            self.search
                .until_key_n_ready(&portal, n)
                .await
                .map_err(|e| Error::Budget(format!("search permits: {e}")))?;
        }
        self.standard
            .until_key_n_ready(&portal, n)
            .await
            .map_err(|e| Error::Budget(format!("standard permits: {e}")))?;
        Ok(())
    }

    fn throttled(&self, portal: u64, policy: &RateLimitPolicy) {
        // A daily cap cannot be waited out in-process; the caller sees the 429 as final.
        if *policy == RateLimitPolicy::Daily {
            return;
        }
        if let Ok(mut map) = self.paused_until.lock() {
            map.insert(portal, Instant::now() + self.limits.throttle_pause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn default_budget_allows_a_burst_of_110_then_spaces_calls() {
        let budget = LocalBudget::default();
        let start = Instant::now();
        budget.acquire(3, CallKind::Standard, 110).await.unwrap();
        assert!(start.elapsed() < Duration::from_millis(50));
        budget.acquire(3, CallKind::Standard, 1).await.unwrap();
        // One permit every 10 s / 110 ≈ 91 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(70),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn search_budget_spaces_calls_per_second() {
        let budget = LocalBudget::new(BudgetLimits {
            standard_per_10s: 1000,
            search_per_second: 5,
            throttle_pause: Duration::from_millis(300),
        })
        .unwrap();
        let start = Instant::now();
        for _ in 0..7 {
            budget.acquire(1, CallKind::Search, 1).await.unwrap();
        }
        // 5 fit the burst; the 6th and 7th need 2 × 200 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(350),
            "{:?}",
            start.elapsed()
        );
        // Another portal has its own bucket.
        let other = Instant::now();
        budget.acquire(2, CallKind::Search, 5).await.unwrap();
        assert!(other.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn throttle_pauses_the_portal_and_oversized_requests_fail() {
        let budget = LocalBudget::new(BudgetLimits {
            standard_per_10s: 110,
            search_per_second: 5,
            throttle_pause: Duration::from_millis(300),
        })
        .unwrap();
        budget.throttled(7, &RateLimitPolicy::TenSecondlyRolling);
        let start = Instant::now();
        budget.acquire(7, CallKind::Standard, 1).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(250));
        let err = budget
            .acquire(7, CallKind::Standard, 111)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Budget(_)), "{err}");
        assert!(
            LocalBudget::new(BudgetLimits {
                standard_per_10s: 0,
                ..BudgetLimits::default()
            })
            .is_err()
        );
    }
}
