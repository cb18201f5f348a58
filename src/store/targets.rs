//! Targets: create or replace, read, and the reads replicas build their hotlists from.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::codec::{self, ms, target_columns};
use super::db::{self, Tx};
use super::{Store, StoreError};
use rustc_hash::FxHashMap;

use crate::contract::model::{Target, TargetStatus};
use crate::dispatch::plan::Target as DispatchTarget;

const TARGET_INSERT_HEAD: &str = "INSERT INTO targets (target_id, kind, plate, person_id, name, \
     status, lead_court_id, cases, known_locations, valid_until, created_at, updated_at)";
const TARGET_INSERT_COLS: usize = 12;
/// Replaces every field but `created_at`.
const TARGET_INSERT_TAIL: &str = "ON CONFLICT (target_id) DO UPDATE SET kind = excluded.kind, \
     plate = excluded.plate, person_id = excluded.person_id, name = excluded.name, \
     status = excluded.status, lead_court_id = excluded.lead_court_id, cases = excluded.cases, \
     known_locations = excluded.known_locations, valid_until = excluded.valid_until, \
     updated_at = excluded.updated_at";

const TARGETS_LOAD_HEAD: &str = "SELECT target_id, plate, person_id, name, status, cases, \
     valid_until FROM targets WHERE target_id IN";

/// The version (`updated_at`, epoch ms) an upsert made at `now` gives its targets: what a
/// caller passes to [`crate::matching::targets::LiveTargets::apply_versioned`] for the targets it wrote,
/// so that the hotlist refresh recognizes them.
pub fn target_version(now: DateTime<Utc>) -> i64 {
    ms(now)
}

impl Store {
    /// Creates or replaces a target (validated first).
    pub async fn upsert_target(
        &self,
        target: &Target,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.upsert_targets(std::slice::from_ref(target), now)
            .await?;
        Ok(())
    }

    /// Creates or replaces many targets in one transaction; all are validated before any is
    /// written. When an id appears twice, the later entry wins. Returns how many were written.
    pub async fn upsert_targets(
        &self,
        targets: &[Target],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        for t in targets {
            t.validate()?;
        }
        // One row per id (a multi-row upsert may not touch a row twice on PostgreSQL).
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(targets.len());
        for (i, t) in targets.iter().enumerate() {
            last.insert(&t.target_id, i);
        }
        let rows: Vec<&Target> = targets
            .iter()
            .enumerate()
            .filter(|(i, t)| last[t.target_id.as_str()] == *i)
            .map(|(_, t)| t)
            .collect();
        let now = target_version(now);
        let mut tx = self.begin_write().await?;
        let mut written = 0;
        for chunk in db::chunks(rows.len()) {
            let sql = db::values_sql(
                tx.dialect(),
                TARGET_INSERT_HEAD,
                TARGET_INSERT_COLS,
                chunk.len(),
                TARGET_INSERT_TAIL,
            );
            let mut q = tx.query_generated(sql);
            for t in &rows[chunk] {
                q = q
                    .bind(t.target_id.as_str())
                    .bind(codec::name(&t.kind))
                    .bind(t.plate.as_ref().map(|p| p.as_str().to_string()))
                    .bind(t.person_id.as_ref().map(|p| p.as_str().to_string()))
                    .bind(t.name.as_deref())
                    .bind(codec::name(&t.status))
                    .bind(t.lead_court_id.as_deref())
                    .bind(codec::to_json(&t.cases)?)
                    .bind(codec::to_json(&t.known_locations)?)
                    .bind(t.valid_until.map(ms))
                    .bind(now)
                    .bind(now);
            }
            written += tx.execute(q).await?;
        }
        tx.commit().await?;
        Ok(written)
    }

    pub async fn get_target(&self, target_id: &str) -> Result<Option<Target>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool
            .query(concat!(
                "SELECT ",
                target_columns!(),
                " FROM targets WHERE target_id = $1"
            ))
            .bind(target_id);
        pool.fetch_optional(q)
            .await?
            .map(|row| codec::target_from_row(&row))
            .transpose()
    }

    /// Every target, whatever its status (the hotlist skips inactive ones), by id.
    pub async fn all_targets(&self) -> Result<Vec<Target>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool.query(concat!(
            "SELECT ",
            target_columns!(),
            " FROM targets ORDER BY target_id"
        ));
        pool.fetch_all(q)
            .await?
            .iter()
            .map(codec::target_from_row)
            .collect()
    }

    /// `(target_id, updated_at)` of the targets changed after `since_ms`, in no particular
    /// order (sorting them cost a sorter over every row, and after a bulk import the refresh
    /// reads tens of thousands). Replicas refresh their hotlists from about the largest
    /// `updated_at` seen (going back a little while commits may still land out of timestamp
    /// order), and fetch whole targets ([`Store::targets_with_ids`]) only for versions they
    /// have not applied yet.
    pub async fn target_versions_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut pool = self.pool.clone();
        let q = pool
            .query("SELECT target_id, updated_at FROM targets WHERE updated_at > $1")
            .bind(since_ms);
        pool.fetch_all(q)
            .await?
            .iter()
            .map(|row| Ok((row.get("target_id")?, row.get("updated_at")?)))
            .collect()
    }

    /// These targets, each with its `updated_at`, in no particular order; ids not found are
    /// left out.
    pub async fn targets_with_ids(&self, ids: &[&str]) -> Result<Vec<(i64, Target)>, StoreError> {
        let mut pool = self.pool.clone();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in db::chunks(ids.len()) {
            let sql = db::in_list_sql(
                pool.dialect(),
                concat!(
                    "SELECT ",
                    target_columns!(),
                    " FROM targets WHERE target_id IN"
                ),
                chunk.len(),
                "",
            );
            let mut q = pool.query_generated(sql);
            for id in &ids[chunk] {
                q = q.bind(*id);
            }
            for row in pool.fetch_all(q).await? {
                out.push((row.get::<i64>("updated_at")?, codec::target_from_row(&row)?));
            }
        }
        Ok(out)
    }
}

/// Sets a target's status (`seized`, `withdrawn`); returns whether the target exists.
pub(crate) async fn set_target_status(
    tx: &mut Tx,
    target_id: &str,
    status: crate::contract::model::TargetStatus,
    now: i64,
) -> Result<bool, StoreError> {
    let q = tx
        .query("UPDATE targets SET status = $1, updated_at = $2 WHERE target_id = $3")
        .bind(codec::name(&status))
        .bind(now)
        .bind(target_id);
    Ok(tx.execute(q).await? > 0)
}

/// Names of a target's columns in a result row: plate, person id, name, status, cases,
/// valid until.
pub(crate) type TargetColumns = [&'static str; 6];
const TARGET_COLUMNS: TargetColumns = [
    "plate",
    "person_id",
    "name",
    "status",
    "cases",
    "valid_until",
];
pub(crate) const PREFIXED_TARGET_COLUMNS: TargetColumns = [
    "t_plate",
    "t_person_id",
    "t_name",
    "t_status",
    "t_cases",
    "t_valid_until",
];

/// A target as dispatch needs it, from a row whose target columns are named `cols`.
pub(crate) fn dispatch_target(
    row: &db::Row,
    cols: &TargetColumns,
    now: i64,
) -> Result<DispatchTarget, StoreError> {
    let [plate, person_id, name, status, cases, valid_until] = *cols;
    let status: TargetStatus = codec::parse_name(row.get(status)?, "target status")?;
    let valid_until: Option<i64> = row.get(valid_until)?;
    let cases_json: String = row.get(cases)?;
    Ok(DispatchTarget {
        plate: codec::plate(row.get(plate)?)?,
        person_id: codec::person_id(row.get(person_id)?)?,
        name: row.get(name)?,
        cases: codec::from_json(&cases_json, "target cases")?,
        cases_json,
        matchable: status == TargetStatus::Active && valid_until.is_none_or(|u| now < u),
    })
}

/// Reads the targets by id. On PostgreSQL the rows are share-locked until commit, so a
/// concurrent withdrawal either happens before (and is seen) or waits for this batch (and
/// then cancels the tasks it created).
pub(crate) async fn load_targets(
    tx: &mut Tx,
    ids: &[&str],
    now: i64,
) -> Result<FxHashMap<String, DispatchTarget>, StoreError> {
    let mut out = FxHashMap::with_capacity_and_hasher(ids.len(), Default::default());
    let tail = tx.dialect().pick("", "FOR SHARE");
    for chunk in db::chunks(ids.len()) {
        let sql = db::in_list_sql(tx.dialect(), TARGETS_LOAD_HEAD, chunk.len(), tail);
        let mut q = tx.query_generated(sql);
        for id in &ids[chunk] {
            q = q.bind(*id);
        }
        for row in tx.fetch_all(q).await? {
            let target = dispatch_target(&row, &TARGET_COLUMNS, now)?;
            out.insert(row.get("target_id")?, target);
        }
    }
    Ok(out)
}
