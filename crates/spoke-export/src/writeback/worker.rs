//! The writeback worker: takes due pending activities, finds their HubSpot contact and company,
//! logs them, and drops those pending longer than the TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use prost::Message;
use spoke_hubspot::{Filter, FilterGroup, ObjectType as HsObject, SearchRequest};
use spoke_platform::connection_mirror;
use spoke_proto::common::v1::{ActivityType, ObjectType};
use spoke_proto::events::v1::ActivityEvent;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::engagement::{self, Targets};
use super::store::{self, ActivityRow};
use super::{count, state};
use crate::error::Error;
use crate::ports::Cluster;

/// Tuning of the worker (`[writeback]` in the config).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Pending activities older than this are dropped.
    pub pending_ttl: Duration,
    /// Wait before retrying after HubSpot or the connection failed (doubled per attempt, ≤ 64×).
    pub retry_delay: Duration,
    /// Wait after an attempt before HubSpot's search is trusted to show what it created.
    pub recovery_delay: Duration,
    /// Lease of a taken activity (retaken after it when the worker crashed).
    pub lease: Duration,
    /// Activities taken per round.
    pub batch: i64,
    /// Longest sleep between rounds when nothing wakes the worker.
    pub poll: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            pending_ttl: Duration::from_secs(7 * 24 * 3600),
            retry_delay: Duration::from_secs(30),
            recovery_delay: Duration::from_secs(15),
            lease: Duration::from_secs(120),
            batch: 20,
            poll: Duration::from_secs(1),
        }
    }
}

/// Writes pending activities to HubSpot.
pub struct Worker {
    pool: PgPool,
    cluster: Arc<dyn Cluster>,
    settings: WorkerSettings,
    wake: Arc<Notify>,
}

/// How one attempt ended.
enum Outcome {
    Written {
        object: HsObject,
        hubspot_id: String,
    },
    Pending {
        reason: String,
        retry: Option<Duration>,
    },
    Finished {
        state: &'static str,
        reason: String,
    },
}

impl Worker {
    /// A worker over the pool and cluster clients.
    pub fn new(pool: PgPool, cluster: Arc<dyn Cluster>, settings: WorkerSettings) -> Self {
        Self {
            pool,
            cluster,
            settings,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Notified when activities become due (new activity, new link).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `cancel`.
    pub async fn run(self, cancel: CancellationToken) -> spoke_platform::Result<()> {
        // Every series exists from the start: a missing one looks like "no data" on dashboards.
        for outcome in ["written", "skipped", "dropped", "failed"] {
            metrics::counter!("spoke_export_writeback_activities_total", "outcome" => outcome)
                .increment(0);
        }
        let mut last_sweep: Option<Instant> = None;
        loop {
            if last_sweep.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_sweep = Some(Instant::now());
                match store::drop_expired(&self.pool, self.settings.pending_ttl.as_secs_f64()).await
                {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(activities = n, "pending activities dropped after the TTL");
                        metrics::counter!("spoke_export_writeback_activities_total", "outcome" => "dropped")
                            .increment(n);
                    }
                    Err(e) => tracing::warn!(error = %e, "writeback TTL sweep failed"),
                }
            }
            let rows = match store::claim_due(
                &self.pool,
                self.settings.batch,
                self.settings.lease.as_secs_f64(),
            )
            .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "writeback: cannot take due activities");
                    Vec::new()
                }
            };
            let full = rows.len() as i64 == self.settings.batch;
            for row in rows {
                if cancel.is_cancelled() {
                    // Leased rows are retaken after the lease by the next process.
                    return Ok(());
                }
                let span = tracing::info_span!(
                    "export.writeback",
                    org = %row.org_id,
                    activity_id = %row.activity_id,
                    attempt = row.attempts + 1,
                );
                self.process(row).instrument(span).await;
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    async fn process(&self, row: ActivityRow) {
        let outcome = self.attempt(&row).await;
        let (org, id) = (&row.org_id, &row.activity_id);
        let stored = match outcome {
            Outcome::Written { object, hubspot_id } => {
                match store::mark_written(&self.pool, org, id, object.path(), &hubspot_id).await {
                    Ok(true) => {
                        count("written");
                        tracing::info!(hubspot_id = %hubspot_id, object = %object, "activity logged in HubSpot");
                        Ok(())
                    }
                    Ok(false) => {
                        tracing::warn!(hubspot_id = %hubspot_id, "activity written after it left the pending state");
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Outcome::Pending { reason, retry } => {
                tracing::debug!(reason = %reason, "activity stays pending");
                store::keep_pending(&self.pool, org, id, &reason, retry.map(|d| d.as_secs_f64()))
                    .await
            }
            Outcome::Finished { state: s, reason } => {
                match store::finish(&self.pool, org, id, s, &reason).await {
                    Ok(true) => {
                        count(if s == state::SKIPPED {
                            "skipped"
                        } else {
                            "failed"
                        });
                        tracing::warn!(state = s, reason = %reason, "activity not written");
                        Ok(())
                    }
                    Ok(false) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = stored {
            // The lease runs out and the activity is taken again; a create already sent is found by
            // the recovery search.
            tracing::error!(error = %e, "writeback: cannot store the outcome of an activity");
        }
    }

    fn backoff(&self, attempts: i32) -> Duration {
        self.settings.retry_delay * 2u32.pow(attempts.clamp(0, 6) as u32)
    }

    fn unavailable(&self, row: &ActivityRow, e: Error) -> Outcome {
        let reason = match &e {
            Error::ReauthRequired(m) => {
                format!(
                    "HubSpot must be reconnected by an admin before activities can be logged ({m})"
                )
            }
            Error::HubSpot(h) if h.is_reauth_required() => {
                format!(
                    "HubSpot must be reconnected by an admin before activities can be logged ({h})"
                )
            }
            other => format!("HubSpot or the connection service is not available now: {other}"),
        };
        Outcome::Pending {
            reason,
            retry: Some(self.backoff(row.attempts)),
        }
    }

    async fn attempt(&self, row: &ActivityRow) -> Outcome {
        let ev = match ActivityEvent::decode(row.event.as_slice()) {
            Ok(ev) => ev,
            Err(e) => {
                return Outcome::Finished {
                    state: state::FAILED,
                    reason: format!("stored activity cannot be decoded: {e}"),
                };
            }
        };
        let t = ActivityType::try_from(row.activity_type).unwrap_or(ActivityType::Unspecified);
        let org = row.org_id.as_str();
        let (settings, mirror) = {
            let mut conn = match self.pool.acquire().await {
                Ok(c) => c,
                Err(e) => return self.unavailable(row, Error::Database(e)),
            };
            let settings = match super::store::settings(&mut conn, org).await {
                Ok(s) => s,
                Err(e) => return self.unavailable(row, e),
            };
            let mirror = match connection_mirror::get(&mut conn, org).await {
                Ok(m) => m,
                Err(e) => return self.unavailable(row, Error::Database(e)),
            };
            (settings, mirror)
        };
        // Settings changed since the activity arrived: nothing was sent yet, so honour them.
        if row.attempted_at.is_none()
            && let Some(reason) = settings.skip_reason(t)
        {
            return Outcome::Finished {
                state: state::SKIPPED,
                reason,
            };
        }
        let mirror = match mirror {
            Some(m) if m.status == connection_mirror::status::CONNECTED => m,
            other => {
                let reason = match other.map(|m| m.status) {
                    Some(s) if s == connection_mirror::status::REAUTH_REQUIRED => {
                        "HubSpot must be reconnected by an admin before activities can be logged"
                            .into()
                    }
                    Some(s) => format!("the org's HubSpot connection is {s}"),
                    None => "the org is not connected to HubSpot".into(),
                };
                return Outcome::Pending {
                    reason,
                    retry: Some(self.backoff(row.attempts)),
                };
            }
        };
        let portal_id = mirror.portal_id;
        let mut targets = Targets::default();
        for (object, profile) in [
            (ObjectType::Contacts, &row.contact_profile_id),
            (ObjectType::Companies, &row.company_profile_id),
        ] {
            if profile.is_empty() {
                continue;
            }
            let id = match store::link(&self.pool, org, portal_id, object, profile).await {
                Ok(id) => id,
                Err(e) => return self.unavailable(row, e),
            };
            match object {
                ObjectType::Contacts => targets.contact = id,
                _ => targets.company = id,
            }
        }
        // The contact decides where the activity belongs: wait for it. The company is added when
        // it is known; it is waited for only when the activity has no contact.
        if !row.contact_profile_id.is_empty() && targets.contact.is_none() {
            return Outcome::Pending {
                reason: format!(
                    "contact profile {} has no HubSpot match yet",
                    row.contact_profile_id
                ),
                retry: None,
            };
        }
        if row.contact_profile_id.is_empty() && targets.company.is_none() {
            return Outcome::Pending {
                reason: format!(
                    "company profile {} has no HubSpot match yet",
                    row.company_profile_id
                ),
                retry: None,
            };
        }
        let object = if row.hubspot_object.is_empty() {
            engagement::object_for(t, settings.log_mode)
        } else {
            match row.hubspot_object.parse::<HsObject>() {
                Ok(o) => o,
                Err(e) => {
                    return Outcome::Finished {
                        state: state::FAILED,
                        reason: format!("stored HubSpot object is invalid: {e}"),
                    };
                }
            }
        };
        let portal = match self.cluster.portal(org, None).await {
            Ok(p) => p,
            Err(e) => return self.unavailable(row, e),
        };
        let title = engagement::title(&ev, t);
        if let Some(at) = row.attempted_at {
            // A create may have reached HubSpot before we could record its id.
            let since = (Utc::now() - at).to_std().unwrap_or_default();
            if since < self.settings.recovery_delay {
                return Outcome::Pending {
                    reason: "checking whether the previous attempt reached HubSpot".into(),
                    retry: Some(self.settings.recovery_delay - since),
                };
            }
            let search = SearchRequest {
                filter_groups: vec![FilterGroup::of(vec![
                    Filter::eq("hs_timestamp", engagement::timestamp_ms(&ev).to_string()),
                    Filter::eq(engagement::title_property(object), title.clone()),
                ])],
                properties: vec![engagement::title_property(object).to_string()],
                limit: 1,
                ..SearchRequest::default()
            };
            match portal.search(object, &search).await {
                Ok(page) => {
                    if let Some(found) = page.results.into_iter().next() {
                        tracing::info!(hubspot_id = %found.id, "previous attempt had created the activity; adopted");
                        return Outcome::Written {
                            object,
                            hubspot_id: found.id,
                        };
                    }
                }
                Err(e) => return self.unavailable(row, Error::HubSpot(e)),
            }
        }
        let owner = match self.cluster.resolve_owner(org, &row.user_id, "").await {
            Ok(o) => o,
            Err(e) => return self.unavailable(row, e),
        };
        let input = engagement::create_input(&ev, t, object, owner.as_deref(), &targets);
        if let Err(e) =
            store::mark_attempt(&self.pool, org, &row.activity_id, object.path(), portal_id).await
        {
            return self.unavailable(row, e);
        }
        match portal.create_object(object, &input).await {
            Ok(created) => Outcome::Written {
                object,
                hubspot_id: created.id,
            },
            Err(e) if e.is_reauth_required() || e.is_retriable() || e.status().is_none() => {
                self.unavailable(row, Error::HubSpot(e))
            }
            Err(e) if matches!(e.status(), Some(401 | 403)) => {
                self.unavailable(row, Error::HubSpot(e))
            }
            Err(e) => Outcome::Finished {
                state: state::FAILED,
                reason: format!("HubSpot refused the {}: {e}", object.path()),
            },
        }
    }
}
