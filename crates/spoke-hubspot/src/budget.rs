//! The portal budget hook: asked before every HubSpot API call so a portal's shared allowance is respected.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

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
    /// Calls per rolling window per portal (OAuth apps: 110 per 10 s).
    pub standard_per_10s: u32,
    /// The rolling window of `standard_per_10s` (HubSpot: 10 s; shorter only in tests).
    pub standard_window: Duration,
    /// Search calls per second per portal (5).
    pub search_per_second: u32,
    /// Added to every window: a call granted at `t` reaches HubSpot a little later, so counting
    /// grants over a slightly longer window keeps HubSpot's own window under the limit.
    pub margin: Duration,
    /// How long to hold back a portal's calls after HubSpot reported a 429.
    pub throttle_pause: Duration,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        Self {
            standard_per_10s: 110,
            standard_window: Duration::from_secs(10),
            search_per_second: 5,
            margin: Duration::from_millis(250),
            throttle_pause: Duration::from_secs(1),
        }
    }
}

/// The grants of one portal and kind within the last window (a sliding-window log).
#[derive(Debug)]
struct Window {
    limit: u32,
    span: Duration,
    grants: VecDeque<Instant>,
}

impl Window {
    fn new(limit: u32, span: Duration) -> Self {
        Self {
            limit,
            span,
            grants: VecDeque::with_capacity(limit as usize),
        }
    }

    /// `Ok` when `n` more grants at `now` stay within the limit; else how long until they would.
    fn room(&mut self, now: Instant, n: u32) -> std::result::Result<(), Duration> {
        while self
            .grants
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.span)
        {
            self.grants.pop_front();
        }
        let used = self.grants.len();
        let n = n as usize;
        if used + n <= self.limit as usize {
            return Ok(());
        }
        // The grant whose expiry frees enough room for `n`.
        let oldest_needed = self.grants[used + n - self.limit as usize - 1];
        Err((oldest_needed + self.span).saturating_duration_since(now))
    }

    fn take(&mut self, now: Instant, n: u32) {
        self.grants.extend(std::iter::repeat_n(now, n as usize));
    }
}

#[derive(Debug)]
struct PortalWindows {
    standard: Window,
    search: Window,
    paused_until: Option<Instant>,
}

/// An in-process budget per portal, for single-replica use and as a fallback.
///
/// HubSpot counts calls in a rolling window (110 per 10 s for OAuth apps), so this keeps a log of the
/// grants of the last window per portal: any window of that length holds at most the limit, which a
/// token bucket (GCRA) cannot promise — its burst plus its refill can reach twice the limit in one
/// window. Search calls take a permit of both limits: counting them twice is the safe side when
/// HubSpot's accounting of search against the rolling limit is unknown.
#[derive(Debug)]
pub struct LocalBudget {
    limits: BudgetLimits,
    portals: Mutex<HashMap<u64, PortalWindows>>,
}

impl Default for LocalBudget {
    fn default() -> Self {
        Self {
            limits: BudgetLimits::default(),
            portals: Mutex::new(HashMap::new()),
        }
    }
}

impl LocalBudget {
    /// Creates a budget with the given limits; zero limits are rejected.
    pub fn new(limits: BudgetLimits) -> Result<Self> {
        if limits.standard_per_10s == 0 {
            return Err(Error::InvalidRequest("standard_per_10s must be > 0".into()));
        }
        if limits.search_per_second == 0 {
            return Err(Error::InvalidRequest(
                "search_per_second must be > 0".into(),
            ));
        }
        if limits.standard_window.is_zero() {
            return Err(Error::InvalidRequest("standard_window must be > 0".into()));
        }
        Ok(Self {
            limits,
            portals: Mutex::new(HashMap::new()),
        })
    }

    fn windows<'a>(
        &self,
        portals: &'a mut HashMap<u64, PortalWindows>,
        portal: u64,
    ) -> &'a mut PortalWindows {
        let l = &self.limits;
        portals.entry(portal).or_insert_with(|| PortalWindows {
            standard: Window::new(l.standard_per_10s, l.standard_window + l.margin),
            search: Window::new(l.search_per_second, Duration::from_secs(1) + l.margin),
            paused_until: None,
        })
    }

    /// Takes the permits if they are free now; else how long to wait before asking again.
    fn try_acquire(&self, portal: u64, kind: CallKind, n: u32) -> Result<Option<Duration>> {
        let mut portals = self
            .portals
            .lock()
            .map_err(|_| Error::Budget("budget state poisoned".into()))?;
        let p = self.windows(&mut portals, portal);
        let now = Instant::now();
        if let Some(until) = p.paused_until {
            if until > now {
                return Ok(Some(until - now));
            }
            p.paused_until = None;
        }
        let mut wait = p.standard.room(now, n).err();
        if kind == CallKind::Search {
            wait = wait.max(p.search.room(now, n).err());
        }
        if wait.is_none() {
            p.standard.take(now, n);
            if kind == CallKind::Search {
                p.search.take(now, n);
            }
        }
        Ok(wait)
    }
}

#[async_trait]
impl Budget for LocalBudget {
    async fn acquire(&self, portal: u64, kind: CallKind, n: u32) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        if n > self.limits.standard_per_10s
            || (kind == CallKind::Search && n > self.limits.search_per_second)
        {
            return Err(Error::Budget(format!(
                "{n} {} permits asked at once exceed the portal's limit",
                kind.as_str()
            )));
        }
        while let Some(wait) = self.try_acquire(portal, kind, n)? {
            // A hair past the expiry, so the next try finds the room it waited for.
            tokio::time::sleep(wait + Duration::from_millis(1)).await;
        }
        Ok(())
    }

    fn throttled(&self, portal: u64, policy: &RateLimitPolicy) {
        // A daily cap cannot be waited out in-process; the caller sees the 429 as final.
        if *policy == RateLimitPolicy::Daily {
            return;
        }
        if let Ok(mut portals) = self.portals.lock() {
            self.windows(&mut portals, portal).paused_until =
                Some(Instant::now() + self.limits.throttle_pause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(per_window: u32, window_ms: u64) -> LocalBudget {
        LocalBudget::new(BudgetLimits {
            standard_per_10s: per_window,
            standard_window: Duration::from_millis(window_ms),
            search_per_second: 5,
            margin: Duration::ZERO,
            throttle_pause: Duration::from_millis(300),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn the_limit_is_free_at_once_then_the_next_call_waits_for_the_window() {
        let budget = small(20, 400);
        let start = Instant::now();
        budget.acquire(3, CallKind::Standard, 20).await.unwrap();
        assert!(start.elapsed() < Duration::from_millis(100));
        budget.acquire(3, CallKind::Standard, 1).await.unwrap();
        // The 21st call waits until the first 20 leave the window.
        assert!(
            start.elapsed() >= Duration::from_millis(390),
            "{:?}",
            start.elapsed()
        );
    }

    /// What HubSpot checks: no rolling window ever holds more than the limit, however the calls
    /// arrive — a token bucket with a full burst fails this (up to twice the limit).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_rolling_window_ever_holds_more_than_the_limit() {
        let budget = std::sync::Arc::new(small(15, 300));
        let grants = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..6u32 {
            let (budget, grants) = (budget.clone(), grants.clone());
            tasks.spawn(async move {
                for i in 0..25u32 {
                    let n = 1 + (worker + i) % 3;
                    budget.acquire(9, CallKind::Standard, n).await.unwrap();
                    let now = Instant::now();
                    grants
                        .lock()
                        .unwrap()
                        .extend(std::iter::repeat_n(now, n as usize));
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let mut g = grants.lock().unwrap().clone();
        g.sort();
        let span = Duration::from_millis(300);
        let mut worst = 0;
        for (i, t) in g.iter().enumerate() {
            let in_window = g[i..].iter().take_while(|u| **u - *t < span).count();
            worst = worst.max(in_window);
        }
        assert!(worst <= 15, "a window held {worst} calls");
        // And the budget is used: ~300 calls at 15 per 300 ms take about 6 s, not much more.
        let took = *g.last().unwrap() - g[0];
        assert!(
            took < Duration::from_secs(9),
            "{took:?} for {} calls",
            g.len()
        );
    }

    #[tokio::test]
    async fn search_calls_also_respect_their_per_second_limit() {
        let budget = small(1000, 10_000);
        let start = Instant::now();
        for _ in 0..7 {
            budget.acquire(1, CallKind::Search, 1).await.unwrap();
        }
        // 5 fit the first second; the 6th waits for the first to leave it.
        assert!(
            start.elapsed() >= Duration::from_millis(950),
            "{:?}",
            start.elapsed()
        );
        // Another portal has its own windows.
        let other = Instant::now();
        budget.acquire(2, CallKind::Search, 5).await.unwrap();
        assert!(other.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test]
    async fn throttle_pauses_the_portal_and_oversized_requests_fail() {
        let budget = small(110, 10_000);
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
