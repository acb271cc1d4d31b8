//! The request log: a bounded ring buffer of recent API calls for inspection.

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;

/// One logged request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedRequest {
    /// Sequence number (monotonic).
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Status sent (0 for a dropped connection).
    pub status: u16,
    /// Portal of the bearer token, when known.
    pub portal: Option<u64>,
    /// Start time, ISO-8601.
    pub time: String,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// The fault injected, if any.
    pub fault: Option<String>,
}

/// Bounded ring buffer of [`LoggedRequest`]s.
#[derive(Debug)]
pub struct RequestLog {
    inner: Mutex<(u64, VecDeque<LoggedRequest>)>,
    capacity: usize,
}

impl RequestLog {
    /// A log keeping the last `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new((0, VecDeque::with_capacity(capacity.min(1024)))),
            capacity: capacity.max(1),
        }
    }

    /// Appends an entry, dropping the oldest when full.
    pub fn push(&self, mut entry: LoggedRequest) {
        let mut g = self.inner.lock();
        g.0 += 1;
        entry.seq = g.0;
        if g.1.len() == self.capacity {
            g.1.pop_front();
        }
        g.1.push_back(entry);
    }

    /// The newest `limit` entries (oldest first), optionally of one portal.
    pub fn recent(&self, limit: usize, portal: Option<u64>) -> Vec<LoggedRequest> {
        let g = self.inner.lock();
        let mut v: Vec<LoggedRequest> =
            g.1.iter()
                .rev()
                .filter(|e| portal.is_none() || e.portal == portal)
                .take(limit)
                .cloned()
                .collect();
        v.reverse();
        v
    }

    /// Empties the log.
    pub fn clear(&self) {
        self.inner.lock().1.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, portal: Option<u64>) -> LoggedRequest {
        LoggedRequest {
            seq: 0,
            method: "GET".into(),
            path: path.into(),
            query: None,
            status: 200,
            portal,
            time: String::new(),
            duration_ms: 0,
            fault: None,
        }
    }

    #[test]
    fn keeps_the_newest_entries() {
        let log = RequestLog::new(3);
        for i in 0..5 {
            log.push(entry(&format!("/{i}"), Some(i % 2)));
        }
        let all = log.recent(10, None);
        assert_eq!(
            all.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
            ["/2", "/3", "/4"]
        );
        assert_eq!(all[2].seq, 5);
        assert_eq!(log.recent(10, Some(1)).len(), 1);
        log.clear();
        assert!(log.recent(10, None).is_empty());
    }
}
