//! Alerts: run failed, connection needs re-auth, limit reached, matches changed. Each goes to
//! `spoke.notifications.v1` in the transaction that records its cause and, when SMTP is
//! configured, as an email to the org's admins once that transaction has committed.

use std::sync::Arc;

use chrono::Utc;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use spoke_platform::kafka::{Outbox, topics};
use spoke_proto::events::v1::{Notification, NotificationKind, Recipient};
use sqlx::{PgConnection, PgPool};

use crate::config::SmtpSettings;
use crate::error::{Error, Result};
use crate::model::ts;
use crate::store;

/// One alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Org.
    pub org: String,
    /// What it is about.
    pub kind: NotificationKind,
    /// Subject line.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Run id (grouping, dedupe).
    pub subject_id: String,
}

/// Writes notifications and sends emails.
#[derive(Clone)]
pub struct Alerts {
    pool: PgPool,
    mailer: Option<Arc<Mailer>>,
}

struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Alerts {
    /// Alerts over the pool; emails when `smtp.host` is set.
    pub fn new(pool: PgPool, smtp: &SmtpSettings) -> Result<Self> {
        let mailer = if smtp.host.is_empty() {
            None
        } else {
            let mut builder = if smtp.starttls {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                    .map_err(|e| Error::Email(format!("smtp.host {}: {e}", smtp.host)))?
            } else {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            };
            builder = builder.port(if smtp.port == 0 { 25 } else { smtp.port });
            if !smtp.username.is_empty() {
                builder = builder.credentials(Credentials::new(
                    smtp.username.clone(),
                    smtp.password.clone(),
                ));
            }
            let from: Mailbox = smtp
                .from
                .parse()
                .map_err(|e| Error::Email(format!("smtp.from {:?}: {e}", smtp.from)))?;
            Some(Arc::new(Mailer {
                transport: builder.build(),
                from,
            }))
        };
        Ok(Self { pool, mailer })
    }

    /// Writes the notification to the outbox in the caller's transaction.
    pub async fn enqueue(&self, conn: &mut PgConnection, alert: &Alert) -> Result<()> {
        let recipients = store::admin_emails(&self.pool, &alert.org)
            .await?
            .into_iter()
            .map(|(user_id, email)| Recipient { user_id, email })
            .collect();
        let n = Notification {
            org_id: alert.org.clone(),
            recipients,
            kind: alert.kind as i32,
            subject: alert.subject.clone(),
            body: alert.body.clone(),
            links: Vec::new(),
            occurred_at: Some(ts(Utc::now())),
            subject_id: alert.subject_id.clone(),
        };
        Outbox::enqueue(conn, topics::NOTIFICATIONS, &alert.org, &n).await?;
        Ok(())
    }

    /// Emails the alert to the org's admins; failures are logged (the Kafka notification stands).
    pub async fn email(&self, alert: &Alert) {
        if let Err(e) = self.try_email(alert).await {
            tracing::warn!(error = %e, org = %alert.org, "alert email not sent");
        }
    }

    async fn try_email(&self, alert: &Alert) -> Result<()> {
        let Some(mailer) = &self.mailer else {
            return Ok(());
        };
        let admins = store::admin_emails(&self.pool, &alert.org).await?;
        for (_, address) in admins {
            let to: Mailbox = match address.parse() {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "admin address not usable for email");
                    continue;
                }
            };
            let message = Message::builder()
                .from(mailer.from.clone())
                .to(to)
                .subject(&alert.subject)
                .body(alert.body.clone())
                .map_err(|e| Error::Email(e.to_string()))?;
            mailer
                .transport
                .send(message)
                .await
                .map_err(|e| Error::Email(e.to_string()))?;
            metrics::counter!("spoke_filtering_alert_emails_total").increment(1);
        }
        Ok(())
    }
}
