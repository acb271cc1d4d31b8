//! The portal budget hook backed by the connection service: permits are leased in blocks so a busy
//! worker makes one `AcquireBudget` call per block instead of one per HubSpot request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use spoke_hubspot::{CallKind, RateLimitPolicy};
use spoke_proto::connection::v1 as pb;

use crate::client::ConnectionClient;
use crate::error::Error;

/// Largest `requested` the service accepts.
const MAX_REQUEST: u32 = 1000;
/// Wait at most this long between asks when the service gives no retry hint.
const DEFAULT_RETRY: Duration = Duration::from_millis(100);

/// A [`spoke_hubspot::Budget`] whose permits come from the connection service (`AcquireBudget`),
/// shared by every replica of every service; 429s are reported back (`ReportThrottle`).
pub struct RemoteBudget {
    client: ConnectionClient,
    standard_block: AtomicU32,
    search_block: AtomicU32,
    leases: Mutex<HashMap<(u64, CallKind), SharedLease>>,
}

/// One portal's and kind's leased permits, locked by whoever is waiting for them.
type SharedLease = Arc<tokio::sync::Mutex<Lease>>;

#[derive(Default)]
struct Lease {
    permits: u32,
    expires: Option<Instant>,
}

impl Lease {
    fn live(&mut self) -> u32 {
        if self.expires.is_some_and(|e| Instant::now() >= e) {
            // Unused permits of an expired lease count against a window already passed: drop them.
            self.permits = 0;
            self.expires = None;
        }
        self.permits
    }
}

impl std::fmt::Debug for RemoteBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBudget")
            .field("standard_block", &self.standard_block)
            .field("search_block", &self.search_block)
            .finish_non_exhaustive()
    }
}

impl RemoteBudget {
    pub(crate) fn new(client: ConnectionClient) -> Self {
        Self {
            client,
            standard_block: AtomicU32::new(10),
            search_block: AtomicU32::new(2),
            leases: Mutex::new(HashMap::new()),
        }
    }

    fn lease(&self, portal: u64, kind: CallKind) -> SharedLease {
        self.leases
            .lock()
            .entry((portal, kind))
            .or_default()
            .clone()
    }

    async fn ask(
        &self,
        org: &str,
        portal: u64,
        kind: CallKind,
        requested: u32,
    ) -> crate::Result<pb::AcquireBudgetResponse> {
        let req = self.client.request(
            org,
            pb::AcquireBudgetRequest {
                portal_id: i64::try_from(portal).unwrap_or(i64::MAX),
                kind: proto_kind(kind) as i32,
                requested: i32::try_from(requested.min(MAX_REQUEST)).unwrap_or(1),
            },
        )?;
        Ok(self.client.grpc().acquire_budget(req).await?.into_inner())
    }
}

fn proto_kind(kind: CallKind) -> pb::BudgetKind {
    match kind {
        CallKind::Standard => pb::BudgetKind::Standard,
        CallKind::Search => pb::BudgetKind::Search,
    }
}

fn to_std(d: Option<prost_types::Duration>) -> Option<Duration> {
    d.and_then(|d| {
        let secs = u64::try_from(d.seconds).ok()?;
        Some(Duration::from_secs(secs) + Duration::from_nanos(u64::try_from(d.nanos).ok()?))
    })
}

fn instant_of(t: Option<prost_types::Timestamp>) -> Option<Instant> {
    let at = chrono::DateTime::from_timestamp(t?.seconds, t?.nanos.max(0) as u32)?;
    let left = (at - chrono::Utc::now()).to_std().unwrap_or_default();
    Some(Instant::now() + left)
}

#[async_trait]
impl spoke_hubspot::Budget for RemoteBudget {
    async fn acquire(&self, portal: u64, kind: CallKind, n: u32) -> spoke_hubspot::Result<()> {
        if n == 0 {
            return Ok(());
        }
        if n > MAX_REQUEST {
            return Err(spoke_hubspot::Error::Budget(format!(
                "{n} permits asked at once; at most {MAX_REQUEST}"
            )));
        }
        let org = self.client.org_of(portal).ok_or_else(|| {
            spoke_hubspot::Error::Budget(format!(
                "portal {portal} is unknown to this service; get portal handles from ConnectionClient::portal"
            ))
        })?;
        let block = match kind {
            CallKind::Standard => self.standard_block.load(Ordering::Relaxed),
            CallKind::Search => self.search_block.load(Ordering::Relaxed),
        };
        let lease = self.lease(portal, kind);
        // Holding the lease lock while waiting queues this portal's callers behind one asker.
        let mut lease = lease.lock().await;
        loop {
            if lease.live() >= n {
                lease.permits -= n;
                return Ok(());
            }
            let want = n.saturating_sub(lease.permits).max(block);
            let resp = self
                .ask(&org, portal, kind, want)
                .await
                .map_err(spoke_hubspot::Error::from)?;
            let granted = u32::try_from(resp.granted).unwrap_or(0);
            if granted > 0 {
                let expires = instant_of(resp.lease_expires_at);
                // Older permits expire first; keeping the earlier deadline for all is the safe side.
                lease.expires = match (lease.expires, expires) {
                    (Some(a), Some(b)) if lease.permits > 0 => Some(a.min(b)),
                    (_, b) => b,
                };
                lease.permits += granted;
                continue;
            }
            let wait = to_std(resp.retry_after)
                .unwrap_or(DEFAULT_RETRY)
                .clamp(Duration::from_millis(5), Duration::from_secs(60));
            tokio::time::sleep(wait).await;
        }
    }

    fn throttled(&self, portal: u64, policy: &RateLimitPolicy) {
        let kind = match policy {
            RateLimitPolicy::Secondly => CallKind::Search,
            _ => CallKind::Standard,
        };
        // Drop leased permits of the portal: the service pauses it and they would cause more 429s.
        let leases: Vec<_> = self
            .leases
            .lock()
            .iter()
            .filter(|((p, _), _)| *p == portal)
            .map(|(_, l)| l.clone())
            .collect();
        for l in leases {
            if let Ok(mut l) = l.try_lock() {
                l.permits = 0;
            }
        }
        let Some(org) = self.client.org_of(portal) else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let policy_name = policy.as_str().to_owned();
        handle.spawn(async move {
            let req = client.request(
                &org,
                pb::ReportThrottleRequest {
                    portal_id: i64::try_from(portal).unwrap_or(i64::MAX),
                    kind: proto_kind(kind) as i32,
                    retry_after: None,
                    policy_name,
                },
            );
            let result = match req {
                Ok(req) => client
                    .grpc()
                    .report_throttle(req)
                    .await
                    .map(|_| ())
                    .map_err(Error::from),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(portal, error = %e, "reporting a HubSpot 429 to the connection service failed");
            }
        });
    }
}

impl RemoteBudget {
    /// Sets how many permits one `AcquireBudget` call leases for standard calls (default 10) and
    /// search calls (default 2). Larger blocks mean fewer calls to the service but more permits lost
    /// when a lease runs out unused.
    pub fn set_blocks(&self, standard: u32, search: u32) {
        self.standard_block
            .store(standard.clamp(1, MAX_REQUEST), Ordering::Relaxed);
        self.search_block
            .store(search.clamp(1, MAX_REQUEST), Ordering::Relaxed);
    }
}
