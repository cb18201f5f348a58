//! Flagging, editing, importing and withdrawing targets: the store first, then the live
//! hotlist, then what follows (consolidation proposals, cancelled tasks).

use chrono::{DateTime, Utc};

use crate::app::consolidation;
use crate::app::context::App;
use crate::clock::Clock;
use crate::contract::model::Target;
use crate::contract::task::MessageKind;
use crate::matching::targets::Link;
use crate::mqtt::OutboundMeta;
use crate::store::{Store, StoreError, target_version};

/// Whether an upsert created the target or replaced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Replaced,
}

/// Stores one validated target and applies it to the hotlist at once.
pub async fn upsert(app: &App, target: &Target) -> Result<Upserted, StoreError> {
    let existed = app.store.get_target(&target.target_id).await?.is_some();
    let now = app.now();
    app.store.upsert_target(target, now).await?;
    // Versioned: the housekeeping refresh then skips this edit instead of reading it back.
    let links = app
        .targets
        .apply_versioned([(Some(target_version(now)), target.clone())]);
    consolidation::propose(app, links).await?;
    Ok(if existed {
        Upserted::Replaced
    } else {
        Upserted::Created
    })
}

/// Stores validated targets in one write and applies them to the hotlist; returns how many
/// rows were written.
pub async fn upsert_all(app: &App, targets: Vec<Target>) -> Result<u64, StoreError> {
    let now = app.now();
    let count = app.store.upsert_targets(&targets, now).await?;
    let version = Some(target_version(now));
    let links = app
        .targets
        .apply_versioned(targets.into_iter().map(|t| (version, t)));
    consolidation::propose(app, links).await?;
    Ok(count)
}

/// Targets an import writes per transaction.
const IMPORT_CHUNK: usize = 5_000;

/// Writes validated targets straight to the store, for a service that is not running here:
/// every running replica picks them up with its housekeeping refresh.
pub async fn import(store: &Store, clock: &Clock, targets: &[Target]) -> Result<u64, StoreError> {
    let mut imported = 0;
    for chunk in targets.chunks(IMPORT_CHUNK) {
        imported += store.upsert_targets(chunk, clock.now()).await?;
    }
    Ok(imported)
}

/// A stored target, whether it has expired, and the link it is part of, if any.
#[derive(Debug, Clone)]
pub struct TargetView {
    pub target: Target,
    pub expired: bool,
    pub linked: Option<Link>,
}

/// The stored target `target_id`, as operators see it.
pub async fn describe(app: &App, target_id: &str) -> Result<Option<TargetView>, StoreError> {
    let Some(target) = app.store.get_target(target_id).await? else {
        return Ok(None);
    };
    Ok(Some(TargetView {
        expired: is_expired(&target, app.now()),
        linked: app.targets.link_of_target(target_id),
        target,
    }))
}

fn is_expired(target: &Target, now: DateTime<Utc>) -> bool {
    target.valid_until.is_some_and(|until| until <= now)
}

/// What withdrawing a target did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withdrawal {
    /// Open tasks of the target that were cancelled (one update message each).
    pub cancelled_tasks: usize,
}

/// Withdraws `target_id`, cancels its open tasks and tells their courts; `None` when there
/// is no such target.
pub async fn withdraw(app: &App, target_id: &str) -> Result<Option<Withdrawal>, StoreError> {
    let Some(messages) = app
        .store
        .withdraw_target(target_id, &app.topics, app.now())
        .await?
    else {
        return Ok(None);
    };
    if let Some(target) = app.store.get_target(target_id).await? {
        app.targets.apply([target]);
    }
    let cancelled_tasks = messages
        .iter()
        .filter(|m| m.kind == MessageKind::Update)
        .count();
    app.publisher
        .send(messages, |_| OutboundMeta::default())
        .await;
    Ok(Some(Withdrawal { cancelled_tasks }))
}
