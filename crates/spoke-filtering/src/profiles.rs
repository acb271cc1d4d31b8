//! The profile index: provider profiles turned into match keys (spoke-match, the rules shared with
//! dedupe), fed by `spoke.profiles.v1`, by `LoadProfiles` and by profile files (CSV or NDJSON).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use chrono::{DateTime, Utc};
use spoke_match::{CompanyFields, ContactFields, company_keys, contact_keys};
use spoke_platform::kafka::{EventHandler, HandlerError, InboundEvent};
use spoke_proto::common::v1::Profile;
use spoke_proto::events::v1::ProfileEvent;
use spoke_proto::events::v1::profile_event::Kind;
use spoke_proto::filtering::v1::{
    LoadProfilesRequest, LoadProfilesResponse, ProfileRef, ProfileRejection,
};
use sqlx::PgConnection;

use crate::error::{Error, Result};
use crate::model::ObjectKind;
use crate::store::{self, ProfileRow};

/// Most profiles (and deletes) in one `LoadProfiles` chunk.
pub const MAX_CHUNK: usize = 1000;
/// Rejections sampled in a `LoadProfiles` answer.
const MAX_SAMPLES: usize = 100;

/// Builds the stored form of a profile, or says why it cannot be matched.
pub fn profile_row(p: &Profile) -> std::result::Result<ProfileRow, String> {
    if p.profile_id.is_empty() || p.profile_id.len() > 128 {
        return Err("profile_id must be 1..=128 characters".into());
    }
    let kind = match ObjectKind::from_code(p.kind) {
        Some(k @ (ObjectKind::Companies | ObjectKind::Contacts)) => k,
        _ => return Err("kind must be companies or contacts".into()),
    };
    let fields: BTreeMap<String, String> = p
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let keys = match kind {
        ObjectKind::Companies => company_keys(&CompanyFields::from_provider(&fields)),
        _ => contact_keys(&ContactFields::from_provider(&fields)),
    };
    if keys.keys.is_empty() {
        let why: Vec<String> = keys.rejections.iter().map(ToString::to_string).collect();
        return Err(format!("no match key: {}", why.join("; ")));
    }
    let updated_at = p
        .updated_at
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    Ok(ProfileRow {
        kind,
        profile_id: p.profile_id.clone(),
        updated_at,
        keys: keys.keys.iter().map(|k| k.encode()).collect(),
    })
}

/// Running totals of a load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadTotals {
    /// Upserted.
    pub upserted: i64,
    /// Deleted.
    pub deleted: i64,
    /// Rejected.
    pub rejected: i64,
    /// The first rejections.
    pub samples: Vec<ProfileRejection>,
}

impl LoadTotals {
    /// As the RPC answer.
    pub fn into_response(self) -> LoadProfilesResponse {
        LoadProfilesResponse {
            upserted: self.upserted,
            deleted: self.deleted,
            rejected: self.rejected,
            rejection_samples: self.samples,
        }
    }
}

/// A chunk turned into what the index stores: rows to upsert and profiles to delete.
#[derive(Debug, Default)]
pub struct PreparedChunk {
    /// Profiles with their keys.
    pub rows: Vec<ProfileRow>,
    /// Profiles to delete.
    pub deletes: Vec<(ObjectKind, String)>,
}

/// Checks a chunk and computes its match keys (no database); rejections go to `totals`.
pub fn prepare_chunk(
    chunk: &LoadProfilesRequest,
    totals: &mut LoadTotals,
) -> Result<PreparedChunk> {
    if chunk.profiles.len() > MAX_CHUNK || chunk.deletes.len() > MAX_CHUNK {
        return Err(Error::InvalidArgument(format!(
            "profiles: a chunk carries at most {MAX_CHUNK} profiles and {MAX_CHUNK} deletes"
        )));
    }
    let mut rows = Vec::with_capacity(chunk.profiles.len());
    for p in &chunk.profiles {
        match profile_row(p) {
            Ok(r) => rows.push(r),
            Err(reason) => {
                totals.rejected += 1;
                if totals.samples.len() < MAX_SAMPLES {
                    totals.samples.push(ProfileRejection {
                        profile_id: p.profile_id.clone(),
                        reason,
                    });
                }
            }
        }
    }
    // Counted as upserted even when an equal-or-newer version was already stored: reloading
    // the same file is harmless and reports the same totals.
    totals.upserted += rows.len() as i64;
    let deletes = chunk
        .deletes
        .iter()
        .filter_map(|d| Some((ObjectKind::from_code(d.kind)?, d.profile_id.clone())))
        .collect();
    Ok(PreparedChunk { rows, deletes })
}

/// Writes a prepared chunk (upserts, then deletes) in the caller's transaction; returns how many
/// profiles were deleted.
pub async fn write_chunk(conn: &mut PgConnection, chunk: &PreparedChunk) -> Result<i64> {
    store::upsert_profiles(conn, &chunk.rows).await?;
    Ok(store::delete_profiles(conn, &chunk.deletes, None).await? as i64)
}

/// Chunks written in one transaction by [`load_stream`].
const CHUNKS_PER_TRANSACTION: usize = 8;

/// Applies a stream of `LoadProfiles` chunks: match keys of the next chunks are computed while
/// the previous ones are written (a writer task, a small channel, so memory stays at a few
/// chunks), up to [`CHUNKS_PER_TRANSACTION`] chunks per transaction.
pub async fn load_stream<S>(
    pool: &sqlx::PgPool,
    mut chunks: S,
) -> std::result::Result<LoadTotals, tonic::Status>
where
    S: futures::Stream<Item = std::result::Result<LoadProfilesRequest, tonic::Status>> + Unpin,
{
    use futures::StreamExt;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<PreparedChunk>(CHUNKS_PER_TRANSACTION);
    let writer_pool = pool.clone();
    let writer = tokio::spawn(async move {
        let mut deleted = 0i64;
        let mut batch = Vec::with_capacity(CHUNKS_PER_TRANSACTION);
        while rx.recv_many(&mut batch, CHUNKS_PER_TRANSACTION).await > 0 {
            let mut db = writer_pool.begin().await?;
            for c in &batch {
                deleted += write_chunk(&mut db, c).await?;
            }
            db.commit().await?;
            batch.clear();
        }
        Ok::<i64, Error>(deleted)
    });
    let mut totals = LoadTotals::default();
    let mut failure: Option<tonic::Status> = None;
    while let Some(chunk) = chunks.next().await {
        let prepared =
            chunk.and_then(|c| prepare_chunk(&c, &mut totals).map_err(tonic::Status::from));
        match prepared {
            Ok(p) => {
                if tx.send(p).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| tonic::Status::internal(format!("profile writer stopped: {e}")))?;
    // A write failure explains a stopped stream better than what the reader saw afterwards.
    totals.deleted += written.map_err(tonic::Status::from)?;
    match failure {
        Some(e) => Err(e),
        None => Ok(totals),
    }
}

/// Applies `spoke.profiles.v1` events to the index.
pub struct ProfileHandler;

#[async_trait::async_trait]
impl EventHandler for ProfileHandler {
    async fn handle(
        &self,
        tx: &mut PgConnection,
        event: &InboundEvent,
    ) -> std::result::Result<(), HandlerError> {
        let ev: ProfileEvent = event.decode()?;
        let occurred = ev
            .occurred_at
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)));
        match ev.kind {
            Some(Kind::Upsert(u)) => {
                let Some(mut p) = u.profile else {
                    return Err(HandlerError::Permanent("upsert without a profile".into()));
                };
                if p.updated_at.is_none() {
                    p.updated_at = ev.occurred_at;
                }
                match profile_row(&p) {
                    Ok(row) => {
                        store::upsert_profiles(tx, &[row])
                            .await
                            .map_err(retriable)?;
                    }
                    // A profile without usable keys cannot be matched; an older version must not
                    // keep matching either, so it leaves the index.
                    Err(reason) => {
                        tracing::info!(profile = %p.profile_id, reason = %reason, "profile without match keys");
                        if let Some(kind) = ObjectKind::from_code(p.kind) {
                            store::delete_profiles(tx, &[(kind, p.profile_id.clone())], occurred)
                                .await
                                .map_err(retriable)?;
                        }
                    }
                }
            }
            Some(Kind::Delete(d)) => {
                let Some(kind) = ObjectKind::from_code(d.kind) else {
                    return Err(HandlerError::Permanent(format!(
                        "delete with kind {}",
                        d.kind
                    )));
                };
                store::delete_profiles(tx, &[(kind, d.profile_id)], occurred)
                    .await
                    .map_err(retriable)?;
            }
            None => {}
        }
        Ok(())
    }
}

fn retriable(e: Error) -> HandlerError {
    HandlerError::Retriable(e.to_string())
}

// ---------------------------------------------------------------- files

/// One line of a profile file.
#[derive(Debug, Clone, PartialEq)]
pub enum FileEntry {
    /// Upsert this profile.
    Upsert(Profile),
    /// Delete this profile.
    Delete(ProfileRef),
}

fn parse_kind(s: &str) -> Option<ObjectKind> {
    match s.trim().to_ascii_lowercase().as_str() {
        "company" | "companies" => Some(ObjectKind::Companies),
        "contact" | "contacts" => Some(ObjectKind::Contacts),
        _ => None,
    }
}

fn entry(
    line: u64,
    id: String,
    kind: &str,
    deleted: bool,
    fields: std::collections::BTreeMap<String, String>,
) -> Result<FileEntry> {
    let kind = parse_kind(kind).ok_or_else(|| {
        Error::Input(format!(
            "line {line}: kind must be company or contact, got {kind:?}"
        ))
    })?;
    if deleted {
        return Ok(FileEntry::Delete(ProfileRef {
            kind: i32::from(kind.code()),
            profile_id: id,
        }));
    }
    Ok(FileEntry::Upsert(Profile {
        profile_id: id,
        kind: i32::from(kind.code()),
        fields,
        intents: Vec::new(),
        updated_at: Some(crate::model::ts(Utc::now())),
    }))
}

/// Reads NDJSON lines: `{"profile_id", "kind": "company"|"contact", "fields": {..}, "deleted"?}`.
pub fn read_ndjson<R: BufRead>(reader: R) -> impl Iterator<Item = Result<FileEntry>> {
    reader.lines().enumerate().filter_map(|(i, line)| {
        let n = i as u64 + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => return Some(Err(Error::Input(format!("line {n}: {e}")))),
        };
        if line.trim().is_empty() {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct Line {
            profile_id: String,
            kind: String,
            #[serde(default)]
            fields: std::collections::HashMap<String, serde_json::Value>,
            #[serde(default)]
            deleted: bool,
        }
        Some(
            serde_json::from_str::<Line>(&line)
                .map_err(|e| Error::Input(format!("line {n}: {e}")))
                .and_then(|l| {
                    let fields = l
                        .fields
                        .into_iter()
                        .filter_map(|(k, v)| match v {
                            serde_json::Value::String(s) => Some((k, s)),
                            serde_json::Value::Null => None,
                            other => Some((k, other.to_string())),
                        })
                        .collect();
                    entry(n, l.profile_id, &l.kind, l.deleted, fields)
                }),
        )
    })
}

/// Reads CSV with a header: `profile_id`, `kind`, optional `deleted`, every other column a field.
pub fn read_csv<R: std::io::Read>(reader: R) -> Result<impl Iterator<Item = Result<FileEntry>>> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| Error::Input(format!("CSV header: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let id_col = col("profile_id")
        .ok_or_else(|| Error::Input("CSV header has no profile_id column".into()))?;
    let kind_col =
        col("kind").ok_or_else(|| Error::Input("CSV header has no kind column".into()))?;
    let deleted_col = col("deleted");
    Ok(csv.into_records().enumerate().map(move |(i, rec)| {
        let n = i as u64 + 2;
        let rec = rec.map_err(|e| Error::Input(format!("line {n}: {e}")))?;
        let mut fields = std::collections::BTreeMap::new();
        for (j, value) in rec.iter().enumerate() {
            if j != id_col && j != kind_col && Some(j) != deleted_col && !value.is_empty() {
                fields.insert(headers[j].to_owned(), value.to_owned());
            }
        }
        let deleted = deleted_col
            .and_then(|j| rec.get(j))
            .is_some_and(|v| matches!(v.trim(), "true" | "1" | "yes"));
        entry(
            n,
            rec.get(id_col).unwrap_or_default().to_owned(),
            rec.get(kind_col).unwrap_or_default(),
            deleted,
            fields,
        )
    }))
}

/// Streams a profile file (`.csv`, else NDJSON) to `LoadProfiles` in chunks of 1,000 (calls of
/// [`PROFILES_PER_CALL`]), calling `progress(lines sent)` after each chunk. Memory stays at a few
/// chunks whatever the file size.
pub async fn load_file<F>(
    client: &mut spoke_proto::filtering::v1::filtering_service_client::FilteringServiceClient<
        tonic::transport::Channel,
    >,
    bearer: &str,
    path: &Path,
    mut progress: F,
) -> Result<LoadProfilesResponse>
where
    F: FnMut(u64) + Send + 'static,
{
    let file = std::fs::File::open(path)
        .map_err(|e| Error::Input(format!("cannot open {}: {e}", path.display())))?;
    let reader = std::io::BufReader::new(file);
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let (tx, rx) = tokio::sync::mpsc::channel::<LoadProfilesRequest>(4);
    // Lines that cannot be read are skipped, each named, and the rest of the file is loaded.
    let skipped: Arc<parking_lot::Mutex<(i64, Vec<String>)>> = Arc::default();
    let skipped_by_reader = skipped.clone();
    // Parsing is blocking I/O: it runs on its own thread and hands chunks over a small channel.
    let reader_task = tokio::task::spawn_blocking(move || -> Result<()> {
        let entries: Box<dyn Iterator<Item = Result<FileEntry>>> = if is_csv {
            Box::new(read_csv(reader)?)
        } else {
            Box::new(read_ndjson(reader))
        };
        let mut chunk = LoadProfilesRequest::default();
        let mut sent = 0u64;
        for e in entries {
            match e {
                Ok(FileEntry::Upsert(p)) => chunk.profiles.push(p),
                Ok(FileEntry::Delete(d)) => chunk.deletes.push(d),
                Err(problem) => {
                    let mut s = skipped_by_reader.lock();
                    s.0 += 1;
                    if s.1.len() < MAX_SAMPLES {
                        s.1.push(problem.to_string());
                    }
                    continue;
                }
            }
            if chunk.profiles.len() == MAX_CHUNK || chunk.deletes.len() == MAX_CHUNK {
                sent += (chunk.profiles.len() + chunk.deletes.len()) as u64;
                if tx.blocking_send(std::mem::take(&mut chunk)).is_err() {
                    return Ok(());
                }
                progress(sent);
            }
        }
        if !chunk.profiles.is_empty() || !chunk.deletes.is_empty() {
            sent += (chunk.profiles.len() + chunk.deletes.len()) as u64;
            let _ = tx.blocking_send(chunk);
            progress(sent);
        }
        Ok(())
    });
    let value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> = format!("Bearer {bearer}")
        .parse()
        .map_err(|_| Error::InvalidArgument("bearer token is not valid header text".into()))?;
    let rx = Arc::new(parking_lot::Mutex::new(rx));
    let mut totals = LoadProfilesResponse::default();
    loop {
        let exhausted = Arc::new(AtomicBool::new(false));
        let stream = call_stream(rx.clone(), exhausted.clone(), PROFILES_PER_CALL / MAX_CHUNK);
        let mut req = tonic::Request::new(stream);
        req.metadata_mut().insert("authorization", value.clone());
        let answer = match client.load_profiles(req).await {
            Ok(a) => a.into_inner(),
            Err(s) => {
                // Closing the channel stops the file reader.
                drop(rx);
                let _ = reader_task.await;
                return Err(Error::Connection(format!(
                    "LoadProfiles: {}: {}",
                    s.code(),
                    s.message()
                )));
            }
        };
        totals.upserted += answer.upserted;
        totals.deleted += answer.deleted;
        totals.rejected += answer.rejected;
        let room = MAX_SAMPLES.saturating_sub(totals.rejection_samples.len());
        totals
            .rejection_samples
            .extend(answer.rejection_samples.into_iter().take(room));
        if exhausted.load(Ordering::Acquire) {
            break;
        }
    }
    reader_task
        .await
        .map_err(|e| Error::Input(format!("file reader stopped: {e}")))??;
    let (count, problems) = std::mem::take(&mut *skipped.lock());
    totals.rejected += count;
    let room = MAX_SAMPLES.saturating_sub(totals.rejection_samples.len());
    totals
        .rejection_samples
        .extend(
            problems
                .into_iter()
                .take(room)
                .map(|reason| ProfileRejection {
                    profile_id: String::new(),
                    reason,
                }),
        );
    Ok(totals)
}

/// Profiles (and deletes) sent in one `LoadProfiles` call. The gRPC servers end every call after
/// 60 s; at ≈ 50,000 profiles/s a call of this size ends well inside that, so a file of any size
/// is loaded as several calls.
pub const PROFILES_PER_CALL: usize = 200_000;

/// The chunks of one call: at most `max` from the shared channel; `exhausted` is set when the
/// channel is closed and empty (the file is fully sent).
fn call_stream<T: Send + 'static>(
    rx: Arc<parking_lot::Mutex<tokio::sync::mpsc::Receiver<T>>>,
    exhausted: Arc<AtomicBool>,
    max: usize,
) -> impl futures::Stream<Item = T> + Send + 'static {
    let mut sent = 0;
    futures::stream::poll_fn(move |cx| {
        if sent == max {
            return Poll::Ready(None);
        }
        match rx.lock().poll_recv(cx) {
            Poll::Ready(Some(chunk)) => {
                sent += 1;
                Poll::Ready(Some(chunk))
            }
            Poll::Ready(None) => {
                exhausted.store(true, Ordering::Release);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(kind: ObjectKind, id: &str, fields: &[(&str, &str)]) -> Profile {
        Profile {
            profile_id: id.into(),
            kind: i32::from(kind.code()),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            ..Profile::default()
        }
    }

    #[test]
    fn profiles_become_spoke_match_keys_or_rejections() {
        let cases = [
            (
                profile(
                    ObjectKind::Companies,
                    "c1",
                    &[
                        ("website", "https://www.Acme.com"),
                        ("name", "Acme Inc"),
                        ("country", "US"),
                    ],
                ),
                Ok(vec!["domain:acme.com", "company_country:acme|US"]),
            ),
            (
                profile(
                    ObjectKind::Contacts,
                    "p1",
                    &[
                        ("email", "Jo@Acme.com"),
                        ("first_name", "Jo"),
                        ("last_name", "Doe"),
                        ("company_name", "Acme"),
                    ],
                ),
                Ok(vec!["email:jo@acme.com", "name_company:jo|doe|acme"]),
            ),
            (
                profile(ObjectKind::Contacts, "p2", &[("first_name", "Jo")]),
                Err("no match key"),
            ),
            (
                profile(ObjectKind::Deals, "d1", &[("name", "x")]),
                Err("kind must be"),
            ),
            (
                profile(ObjectKind::Companies, "", &[("domain", "a.com")]),
                Err("profile_id"),
            ),
        ];
        for (p, want) in cases {
            match (profile_row(&p), want) {
                (Ok(row), Ok(keys)) => assert_eq!(row.keys, keys, "{}", p.profile_id),
                (Err(e), Err(prefix)) => assert!(e.starts_with(prefix), "{e}"),
                (got, want) => panic!("{}: got {got:?}, want {want:?}", p.profile_id),
            }
        }
    }

    #[test]
    fn files_parse_as_csv_and_ndjson() {
        let csv =
            "profile_id,kind,name,domain,deleted\nc1,company,Acme,acme.com,\nc2,companies,,,true\n";
        let got: Vec<FileEntry> = read_csv(csv.as_bytes())
            .expect("header")
            .collect::<Result<_>>()
            .expect("rows");
        assert_eq!(got.len(), 2);
        match &got[0] {
            FileEntry::Upsert(p) => {
                assert_eq!(p.profile_id, "c1");
                assert_eq!(p.fields.get("domain").map(String::as_str), Some("acme.com"));
                assert!(!p.fields.contains_key("deleted"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&got[1], FileEntry::Delete(d) if d.profile_id == "c2"));

        let nd = "{\"profile_id\":\"p1\",\"kind\":\"contact\",\"fields\":{\"email\":\"a@b.co\",\"n\":3}}\n\n{\"profile_id\":\"p2\",\"kind\":\"thing\"}\n";
        let got: Vec<Result<FileEntry>> = read_ndjson(nd.as_bytes()).collect();
        assert_eq!(got.len(), 2);
        match &got[0] {
            Ok(FileEntry::Upsert(p)) => {
                assert_eq!(p.fields.get("n").map(String::as_str), Some("3"))
            }
            other => panic!("{other:?}"),
        }
        let err = got[1].as_ref().expect_err("bad kind");
        assert!(err.to_string().starts_with("line 3: kind must be"), "{err}");
    }
}
