//! Per-portal rate limiting: a rolling ten-secondly window, a secondly search window and a daily cap,
//! reported through HubSpot's `X-HubSpot-RateLimit-*` headers.

use std::collections::VecDeque;

use crate::config::RateLimits;

/// Which budget a call draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Any API call except search.
    Standard,
    /// `POST /crm/v3/objects/{type}/search`.
    Search,
}

/// Outcome of a limit check.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// `Some(policyName)` when the call is refused.
    pub refused: Option<&'static str>,
    /// Headers to send with the answer.
    pub headers: Vec<(&'static str, String)>,
}

const DAY_MS: i64 = 86_400_000;

/// The limiter state of one portal.
#[derive(Debug)]
pub struct Limiter {
    /// Current settings.
    pub config: RateLimits,
    window: VecDeque<i64>,
    search: VecDeque<i64>,
    day: i64,
    day_count: u64,
}

impl Limiter {
    /// A limiter with the given settings.
    pub fn new(config: RateLimits) -> Self {
        Self {
            config,
            window: VecDeque::new(),
            search: VecDeque::new(),
            day: 0,
            day_count: 0,
        }
    }

    /// Replaces the settings. Windows are kept so a toggle does not forget recent calls; a changed
    /// daily cap starts a fresh daily count, so tests can set a small cap and hit it exactly.
    pub fn set(&mut self, config: RateLimits) {
        if config.daily != self.config.daily {
            self.day_count = 0;
        }
        self.config = config;
    }

    /// Records a call at `now_ms` unless a limit refuses it; refused calls are not counted.
    pub fn check(&mut self, kind: CallKind, now_ms: i64) -> Verdict {
        let c = self.config;
        let interval = c.interval_ms as i64;
        while self.window.front().is_some_and(|t| *t <= now_ms - interval) {
            self.window.pop_front();
        }
        while self.search.front().is_some_and(|t| *t <= now_ms - 1000) {
            self.search.pop_front();
        }
        let day = now_ms.div_euclid(DAY_MS);
        if day != self.day {
            self.day = day;
            self.day_count = 0;
        }
        let refused = if !c.enabled {
            None
        } else if c.daily > 0 && self.day_count >= c.daily {
            Some("DAILY")
        } else {
            match kind {
                CallKind::Standard if self.window.len() as u64 >= u64::from(c.max_per_interval) => {
                    Some("TEN_SECONDLY_ROLLING")
                }
                CallKind::Search if self.search.len() as u64 >= u64::from(c.search_per_second) => {
                    Some("SECONDLY")
                }
                _ => None,
            }
        };
        if refused.is_none() {
            match kind {
                CallKind::Standard => self.window.push_back(now_ms),
                CallKind::Search => self.search.push_back(now_ms),
            }
            self.day_count += 1;
        }
        let mut headers = Vec::new();
        match kind {
            CallKind::Standard => {
                let remaining =
                    u64::from(c.max_per_interval).saturating_sub(self.window.len() as u64);
                headers.push((
                    "x-hubspot-ratelimit-interval-milliseconds",
                    c.interval_ms.to_string(),
                ));
                headers.push(("x-hubspot-ratelimit-max", c.max_per_interval.to_string()));
                headers.push(("x-hubspot-ratelimit-remaining", remaining.to_string()));
            }
            CallKind::Search => {
                let remaining =
                    u64::from(c.search_per_second).saturating_sub(self.search.len() as u64);
                headers.push((
                    "x-hubspot-ratelimit-secondly",
                    c.search_per_second.to_string(),
                ));
                headers.push((
                    "x-hubspot-ratelimit-secondly-remaining",
                    remaining.to_string(),
                ));
            }
        }
        if c.daily > 0 {
            headers.push(("x-hubspot-ratelimit-daily", c.daily.to_string()));
            headers.push((
                "x-hubspot-ratelimit-daily-remaining",
                c.daily.saturating_sub(self.day_count).to_string(),
            ));
        }
        Verdict { refused, headers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u32, search: u32, daily: u64) -> RateLimits {
        RateLimits {
            enabled: true,
            max_per_interval: max,
            interval_ms: 10_000,
            search_per_second: search,
            daily,
        }
    }

    #[test]
    fn rolling_window_refuses_then_recovers() {
        let mut l = Limiter::new(limits(3, 5, 0));
        let outcomes: Vec<Option<&str>> = [0, 1, 2, 3, 9_999, 10_000]
            .iter()
            .map(|t| l.check(CallKind::Standard, *t).refused)
            .collect();
        assert_eq!(
            outcomes,
            [
                None,
                None,
                None,
                Some("TEN_SECONDLY_ROLLING"),
                Some("TEN_SECONDLY_ROLLING"),
                None
            ]
        );
    }

    #[test]
    fn search_and_daily_policies() {
        let mut l = Limiter::new(limits(100, 2, 4));
        assert_eq!(l.check(CallKind::Search, 0).refused, None);
        assert_eq!(l.check(CallKind::Search, 1).refused, None);
        assert_eq!(l.check(CallKind::Search, 2).refused, Some("SECONDLY"));
        assert_eq!(l.check(CallKind::Search, 1001).refused, None);
        let v = l.check(CallKind::Standard, 1002);
        assert_eq!(v.refused, None);
        assert!(
            v.headers
                .contains(&("x-hubspot-ratelimit-daily-remaining", "0".into()))
        );
        assert_eq!(l.check(CallKind::Standard, 1003).refused, Some("DAILY"));
    }

    #[test]
    fn disabled_limits_only_report() {
        let mut cfg = limits(1, 1, 0);
        cfg.enabled = false;
        let mut l = Limiter::new(cfg);
        for t in 0..5 {
            assert_eq!(l.check(CallKind::Standard, t).refused, None);
        }
        let v = l.check(CallKind::Standard, 6);
        assert!(v.headers.contains(&("x-hubspot-ratelimit-max", "1".into())));
    }
}
