//! Fault injection: rules matching method/path/portal that add latency, answer an error status, drop the
//! connection, or send a 429 of a chosen policy. Deterministic through a seeded RNG and `count` limits.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status (500, 502, 503, 504, 423, 477, ...) and a HubSpot-style body.
    Status {
        /// HTTP status.
        status: u16,
        /// `Retry-After` seconds (477 defaults to 1, 423 to 2).
        #[serde(default, rename = "retryAfterSecs")]
        retry_after_secs: Option<u64>,
    },
    /// Delay the answer.
    Latency {
        /// Milliseconds.
        ms: u64,
    },
    /// Close the connection without an answer.
    Reset,
    /// A 429 as if a limit was hit.
    RateLimit {
        /// `TEN_SECONDLY_ROLLING`, `SECONDLY` or `DAILY`.
        #[serde(rename = "policyName")]
        policy_name: String,
    },
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// Path pattern; `*` matches any characters (default `*`).
    #[serde(default = "any")]
    pub route: String,
    /// HTTP method to match (any when absent).
    #[serde(default)]
    pub method: Option<String>,
    /// Portal to match (any when absent).
    #[serde(default)]
    pub portal: Option<u64>,
    /// The fault.
    pub fault: FaultKind,
    /// Chance per matching request, `0.0..=1.0` (default 1).
    #[serde(default = "certain")]
    pub probability: f64,
    /// Only the next N matching requests (unlimited when absent); counts down as it fires.
    #[serde(default)]
    pub count: Option<u64>,
}

fn any() -> String {
    "*".into()
}
fn certain() -> f64 {
    1.0
}

impl FaultRule {
    /// A rule firing on every request to `route`.
    pub fn always(route: &str, fault: FaultKind) -> Self {
        Self {
            route: route.into(),
            method: None,
            portal: None,
            fault,
            probability: 1.0,
            count: None,
        }
    }

    /// Limits the rule to the next `n` matching requests.
    pub fn times(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    fn matches(&self, method: &str, path: &str, portal: Option<u64>) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.portal.is_none_or(|p| Some(p) == portal)
            && self.count != Some(0)
            && glob(&self.route, path)
    }
}

/// Glob with `*` only; used for route patterns.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// What to do with one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultDecision {
    /// Added latency in milliseconds.
    pub latency_ms: u64,
    /// The terminal fault (status, reset, 429), if any.
    pub terminal: Option<FaultKind>,
}

/// The active rules and the RNG.
#[derive(Debug)]
pub struct FaultState {
    rules: Vec<FaultRule>,
    rng: StdRng,
}

impl FaultState {
    /// No rules, RNG seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rules: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Replaces the rules; reseeds the RNG when `seed` is given.
    pub fn set(&mut self, rules: Vec<FaultRule>, seed: Option<u64>) {
        self.rules = rules;
        if let Some(s) = seed {
            self.rng = StdRng::seed_from_u64(s);
        }
    }

    /// Adds one rule.
    pub fn add(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    /// The rules (with remaining counts).
    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules.clone()
    }

    /// Decides the faults of one request; every matching rule rolls its own dice, first terminal wins.
    pub fn decide(&mut self, method: &str, path: &str, portal: Option<u64>) -> FaultDecision {
        let mut d = FaultDecision::default();
        for rule in &mut self.rules {
            if !rule.matches(method, path, portal) {
                continue;
            }
            if matches!(rule.fault, FaultKind::Latency { .. }) || d.terminal.is_none() {
                let fire = rule.probability >= 1.0 || self.rng.random::<f64>() < rule.probability;
                if !fire {
                    continue;
                }
                if let Some(c) = rule.count.as_mut() {
                    *c -= 1;
                }
                match &rule.fault {
                    FaultKind::Latency { ms } => d.latency_ms += ms,
                    other => d.terminal = Some(other.clone()),
                }
            }
        }
        self.rules.retain(|r| r.count != Some(0));
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases = [
            ("*", "/anything", true),
            (
                "/crm/v3/objects/*/batch/create",
                "/crm/v3/objects/contacts/batch/create",
                true,
            ),
            (
                "/crm/v3/objects/*/batch/create",
                "/crm/v3/objects/contacts/batch/read",
                false,
            ),
            ("/crm/*", "/oauth/v1/token", false),
            ("/exact", "/exact", true),
            ("/exact", "/exact/more", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p, t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn count_limited_rules_fire_exactly_n_times() {
        let mut f = FaultState::new(1);
        f.add(
            FaultRule::always(
                "/crm/*",
                FaultKind::Status {
                    status: 503,
                    retry_after_secs: None,
                },
            )
            .times(2),
        );
        let fired: Vec<bool> = (0..4)
            .map(|_| f.decide("GET", "/crm/x", None).terminal.is_some())
            .collect();
        assert_eq!(fired, [true, true, false, false]);
        assert!(f.rules().is_empty());
    }

    #[test]
    fn seeded_probability_repeats() {
        let run = || {
            let mut f = FaultState::new(7);
            let mut r = FaultRule::always("*", FaultKind::Reset);
            r.probability = 0.5;
            f.add(r);
            (0..64)
                .map(|_| f.decide("GET", "/x", None).terminal.is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let hits = a.iter().filter(|x| **x).count();
        assert!((16..=48).contains(&hits), "{hits}");
    }

    #[test]
    fn latency_adds_up_and_method_portal_filter() {
        let mut f = FaultState::new(1);
        f.add(FaultRule::always("*", FaultKind::Latency { ms: 5 }));
        let mut r = FaultRule::always("*", FaultKind::Latency { ms: 7 });
        r.method = Some("POST".into());
        r.portal = Some(9);
        f.add(r);
        assert_eq!(f.decide("GET", "/x", Some(9)).latency_ms, 5);
        assert_eq!(f.decide("POST", "/x", Some(9)).latency_ms, 12);
        assert_eq!(f.decide("POST", "/x", Some(8)).latency_ms, 5);
    }
}
