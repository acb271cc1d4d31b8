//! Data-sharing toggles per org, locked when the contract opts out, and the contributions record.

use chrono::Utc;
use spoke_proto::connection::v1 as pb;

use crate::domain::{Domain, ts};
use crate::error::{Error, Result};
use crate::store::{self, ContributionRow, SharingRow};

fn defaults() -> SharingRow {
    SharingRow {
        share_crm_data: false,
        share_usage_data: false,
        locked_by_contract: false,
        updated_at: Utc::now(),
        updated_by: String::new(),
    }
}

impl SharingRow {
    /// The API view.
    pub fn to_proto(&self) -> pb::DataSharingSettings {
        pb::DataSharingSettings {
            share_crm_data: self.share_crm_data,
            share_usage_data: self.share_usage_data,
            locked_by_contract: self.locked_by_contract,
            updated_at: Some(ts(self.updated_at)),
            updated_by: self.updated_by.clone(),
        }
    }
}

impl ContributionRow {
    /// The API view.
    pub fn to_proto(&self) -> pb::Contribution {
        pb::Contribution {
            contribution_id: self.contribution_id.to_string(),
            category: self.category,
            object: self.object,
            record_count: self.record_count,
            source: self.source.clone(),
            source_id: self.source_id.clone(),
            occurred_at: Some(ts(self.occurred_at)),
        }
    }
}

impl Domain {
    /// Current settings (defaults when never saved).
    pub async fn sharing(&self, org: &str) -> Result<SharingRow> {
        let mut conn = self.pool.acquire().await?;
        Ok(store::sharing(&mut conn, org, false)
            .await?
            .unwrap_or_else(defaults))
    }

    /// Changes toggles; locked orgs get FAILED_PRECONDITION.
    pub async fn set_sharing(
        &self,
        org: &str,
        actor: &str,
        crm: Option<bool>,
        usage: Option<bool>,
    ) -> Result<SharingRow> {
        let mut tx = self.begin().await?;
        let mut s = store::sharing(&mut tx, org, true)
            .await?
            .unwrap_or_else(defaults);
        if s.locked_by_contract {
            return Err(Error::FailedPrecondition(
                "data sharing is locked by your contract; the toggles stay off".into(),
            ));
        }
        if let Some(v) = crm {
            s.share_crm_data = v;
        }
        if let Some(v) = usage {
            s.share_usage_data = v;
        }
        s.updated_at = Utc::now();
        s.updated_by = actor.to_owned();
        store::save_sharing(&mut tx, org, &s).await?;
        tx.commit().await?;
        Ok(s)
    }

    /// Records the contract opt-out: opting out turns every toggle off and locks them.
    pub async fn set_contract_opt_out(
        &self,
        org: &str,
        actor: &str,
        opted_out: bool,
    ) -> Result<SharingRow> {
        let mut tx = self.begin().await?;
        let mut s = store::sharing(&mut tx, org, true)
            .await?
            .unwrap_or_else(defaults);
        s.locked_by_contract = opted_out;
        if opted_out {
            s.share_crm_data = false;
            s.share_usage_data = false;
        }
        s.updated_at = Utc::now();
        s.updated_by = actor.to_owned();
        store::save_sharing(&mut tx, org, &s).await?;
        tx.commit().await?;
        Ok(s)
    }

    /// Records a contribution unless its toggle is off; idempotent by key.
    pub async fn record_contribution(
        &self,
        org: &str,
        key: &str,
        c: ContributionRow,
    ) -> Result<Option<ContributionRow>> {
        let mut tx = self.begin().await?;
        if let Some(existing) = store::contribution_by_key(&mut tx, org, key).await? {
            return Ok(Some(existing));
        }
        let s = store::sharing(&mut tx, org, false)
            .await?
            .unwrap_or_else(defaults);
        let on = if c.category == pb::ContributionCategory::CrmData as i32 {
            s.share_crm_data
        } else {
            s.share_usage_data
        };
        if !on || s.locked_by_contract {
            return Ok(None);
        }
        let row = store::insert_contribution(&mut tx, org, key, &c).await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    /// One page of contributions, newest first.
    pub async fn contributions(
        &self,
        org: &str,
        category: i32,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<ContributionRow>> {
        store::list_contributions(&self.pool, org, category, offset, limit).await
    }
}
