//! The portal budget authority (DESIGN.md §5): a sliding-window allowance per portal kept in Postgres so
//! every replica agrees, leased in blocks, paused for the whole portal after a reported 429.
//!
//! A permit granted at `t` may be used until `t + lease`, so HubSpot sees it somewhere in
//! `[t, t + lease]`. Counting every grant for `window + lease + margin` therefore keeps any HubSpot
//! window of `window` length at or under the limit, whatever order the leases are used in.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::config::BudgetConfig;
use crate::error::{Error, Result};
use crate::store;

/// Kind of permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Ordinary calls.
    Standard,
    /// Search calls (also take a standard permit).
    Search,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Standard => "standard",
            Kind::Search => "search",
        }
    }
}

/// The answer to one acquire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Permits granted now.
    pub granted: u32,
    /// Use them before this.
    pub lease_expires_at: DateTime<Utc>,
    /// When fewer than requested: ask again after this.
    pub retry_after: Duration,
}

/// The budget authority over the service's Postgres.
#[derive(Debug, Clone)]
pub struct BudgetAuthority {
    pool: PgPool,
    cfg: BudgetConfig,
}

/// Permits still free in a window given what was granted in it.
pub fn available(limit: u32, used: i64) -> u32 {
    u32::try_from((i64::from(limit) - used).max(0)).unwrap_or(0)
}

impl BudgetAuthority {
    /// An authority with the configured limits.
    pub fn new(pool: PgPool, cfg: BudgetConfig) -> Self {
        // Series exist from the start (at zero), so budget panels and rates work before traffic.
        for kind in [Kind::Standard, Kind::Search] {
            metrics::counter!("spoke_connection_budget_granted_total", "kind" => kind.as_str())
                .increment(0);
            metrics::counter!("spoke_connection_budget_denied_total", "kind" => kind.as_str())
                .increment(0);
        }
        metrics::counter!("spoke_connection_budget_throttles_total").increment(0);
        Self { pool, cfg }
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(self.cfg.lease_ms)
    }

    /// (limit, window) of a kind, plan-aware for standard calls.
    fn limit(&self, kind: Kind, plan: &str) -> (u32, Duration) {
        let extra = self.lease() + Duration::from_millis(self.cfg.safety_margin_ms);
        match kind {
            Kind::Standard => (
                self.cfg
                    .standard_per_10s_by_plan
                    .get(plan)
                    .copied()
                    .unwrap_or(self.cfg.standard_per_10s),
                Duration::from_secs(10) + extra,
            ),
            Kind::Search => (self.cfg.search_per_second, Duration::from_secs(1) + extra),
        }
    }

    /// Grants up to `requested` permits now (search calls take standard permits too).
    pub async fn acquire(
        &self,
        portal: i64,
        kind: Kind,
        requested: u32,
        plan: &str,
    ) -> Result<Grant> {
        let mut tx = self.pool.begin().await?;
        let kinds: &[Kind] = match kind {
            Kind::Standard => &[Kind::Standard],
            Kind::Search => &[Kind::Standard, Kind::Search],
        };
        let mut grant = requested;
        let mut retry = Duration::ZERO;
        let mut now = Utc::now();
        // Locks in a fixed order (standard, then search) so concurrent acquirers never deadlock.
        for k in kinds {
            let (paused_until, db_now) = store::lock_budget(&mut tx, portal, k.as_str()).await?;
            now = db_now;
            if paused_until > now {
                grant = 0;
                retry = retry.max((paused_until - now).to_std().unwrap_or_default());
                continue;
            }
            let (limit, window) = self.limit(*k, plan);
            let since = now
                - chrono::Duration::from_std(window).map_err(|e| Error::Config(e.to_string()))?;
            let (used, _) = store::grants_since(&mut tx, portal, k.as_str(), since).await?;
            let free = available(limit, used);
            if free < requested {
                // When will enough permits leave the window? Walk the grants oldest first.
                let mut freed = i64::from(free);
                for (at, permits) in store::grants_in_window(&mut tx, portal, k.as_str()).await? {
                    freed += i64::from(permits);
                    if freed >= i64::from(requested.min(limit)) {
                        let wait = (at - since).to_std().unwrap_or_default();
                        retry = retry.max(wait);
                        break;
                    }
                }
            }
            grant = grant.min(free);
        }
        if grant > 0 {
            for k in kinds {
                store::record_grant(
                    &mut tx,
                    portal,
                    k.as_str(),
                    now,
                    i32::try_from(grant).unwrap_or(i32::MAX),
                )
                .await?;
            }
            metrics::counter!("spoke_connection_budget_granted_total", "kind" => kind.as_str())
                .increment(u64::from(grant));
        }
        if grant < requested {
            // Permits asked but not granted now: the portal is at its limit (or paused after a 429).
            metrics::counter!("spoke_connection_budget_denied_total", "kind" => kind.as_str())
                .increment(u64::from(requested - grant));
        }
        tx.commit().await?;
        Ok(Grant {
            granted: grant,
            lease_expires_at: now + chrono::Duration::from_std(self.lease()).unwrap_or_default(),
            retry_after: if grant < requested {
                retry.max(Duration::from_millis(5))
            } else {
                Duration::ZERO
            },
        })
    }

    /// Pauses the portal's permits of `kind` (standard pauses search too) for `retry_after` or the default.
    pub async fn throttle(
        &self,
        portal: i64,
        kind: Kind,
        retry_after: Option<Duration>,
    ) -> Result<DateTime<Utc>> {
        let pause = retry_after
            .unwrap_or(Duration::from_millis(self.cfg.throttle_pause_ms))
            .max(Duration::from_secs(1));
        let mut conn = self.pool.acquire().await?;
        let now = store::db_now(&mut conn).await?;
        let until = now + chrono::Duration::from_std(pause).unwrap_or_default();
        let kinds: &[Kind] = match kind {
            Kind::Standard => &[Kind::Standard, Kind::Search],
            Kind::Search => &[Kind::Search],
        };
        for k in kinds {
            store::pause_budget(&mut conn, portal, k.as_str(), until).await?;
        }
        metrics::counter!("spoke_connection_budget_throttles_total").increment(1);
        Ok(until)
    }
}

/// The authority used directly by this service's own HubSpot calls (owners, users).
#[async_trait]
impl spoke_hubspot::Budget for BudgetAuthority {
    async fn acquire(
        &self,
        portal: u64,
        kind: spoke_hubspot::CallKind,
        n: u32,
    ) -> spoke_hubspot::Result<()> {
        let kind = match kind {
            spoke_hubspot::CallKind::Standard => Kind::Standard,
            spoke_hubspot::CallKind::Search => Kind::Search,
        };
        let portal = i64::try_from(portal).unwrap_or(i64::MAX);
        let mut have = 0;
        while have < n {
            let g = BudgetAuthority::acquire(self, portal, kind, n - have, "")
                .await
                .map_err(|e| spoke_hubspot::Error::Budget(e.to_string()))?;
            have += g.granted;
            if have < n {
                tokio::time::sleep(g.retry_after).await;
            }
        }
        Ok(())
    }

    fn throttled(&self, portal: u64, policy: &spoke_hubspot::RateLimitPolicy) {
        let kind = match policy {
            spoke_hubspot::RateLimitPolicy::Secondly => Kind::Search,
            _ => Kind::Standard,
        };
        let this = self.clone();
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                let _ = this
                    .throttle(i64::try_from(portal).unwrap_or(i64::MAX), kind, None)
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_never_goes_negative() {
        for (limit, used, want) in [
            (110, 0, 110),
            (110, 100, 10),
            (110, 110, 0),
            (110, 150, 0),
            (5, 3, 2),
        ] {
            assert_eq!(available(limit, used), want, "{limit} {used}");
        }
    }
}
