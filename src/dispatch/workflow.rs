//! The task state machine: which status reports make sense from which status.
//!
//! ```text
//!                 ┌──────────────┐
//!   dispatched ──►│ acknowledged │──► en_route ──┐
//!       │         └──────┬───────┘               │
//!       └────────────────┴───────────────────────┴──► seized (vehicle) | located (person)
//!                                                     not_found | rejected
//!   any open status ──(target withdrawn)──► cancelled
//! ```
//!
//! Closed statuses are final. Pure: no I/O, used by the store inside its transaction.

use crate::contract::model::TaskKind;
use crate::contract::task::TaskStatus;

/// Why a status report cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("{0} is not a status a command center can report")]
    NotReportable(TaskStatus),
    #[error("the task is already {0}")]
    Unchanged(TaskStatus),
    #[error("the task is closed ({from}); it cannot become {to}")]
    Closed { from: TaskStatus, to: TaskStatus },
    #[error("a task cannot go back from {from} to {to}")]
    Backwards { from: TaskStatus, to: TaskStatus },
    #[error("{to} does not apply to a {kind} task")]
    WrongKind { kind: &'static str, to: TaskStatus },
}

/// Checks a reported transition of a task of `kind` from `from` to `to`.
pub fn check_transition(
    kind: TaskKind,
    from: TaskStatus,
    to: TaskStatus,
) -> Result<(), TransitionError> {
    use TaskStatus::*;
    if !TaskStatus::REPORTABLE.contains(&to) {
        return Err(TransitionError::NotReportable(to));
    }
    if from == to {
        return Err(TransitionError::Unchanged(from));
    }
    if !from.is_open() {
        return Err(TransitionError::Closed { from, to });
    }
    let kind_name = match kind {
        TaskKind::VehicleSeizure => "vehicle_seizure",
        TaskKind::PersonLocate => "person_locate",
        TaskKind::PersonSearch => "person_search",
    };
    match (kind, to) {
        (TaskKind::VehicleSeizure, Located) => {
            return Err(TransitionError::WrongKind {
                kind: kind_name,
                to,
            });
        }
        (TaskKind::PersonLocate | TaskKind::PersonSearch, Seized) => {
            return Err(TransitionError::WrongKind {
                kind: kind_name,
                to,
            });
        }
        _ => {}
    }
    // Forward order among the open statuses.
    let rank = |s: TaskStatus| match s {
        Dispatched => 0,
        Acknowledged => 1,
        EnRoute => 2,
        _ => 3,
    };
    if rank(to) < rank(from) {
        return Err(TransitionError::Backwards { from, to });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    const V: TaskKind = TaskKind::VehicleSeizure;
    const P: TaskKind = TaskKind::PersonLocate;

    #[test]
    fn forward_moves_are_allowed() {
        for (from, to) in [
            (Dispatched, Acknowledged),
            (Dispatched, EnRoute),
            (Acknowledged, EnRoute),
            (EnRoute, Seized),
            (Dispatched, Seized),
            (Acknowledged, NotFound),
            (EnRoute, Rejected),
            (Dispatched, Rejected),
        ] {
            assert_eq!(check_transition(V, from, to), Ok(()), "{from} -> {to}");
        }
        assert_eq!(check_transition(P, EnRoute, Located), Ok(()));
    }

    #[test]
    fn impossible_moves_are_refused_with_a_reason() {
        assert_eq!(
            check_transition(V, NotFound, Seized),
            Err(TransitionError::Closed {
                from: NotFound,
                to: Seized
            })
        );
        assert_eq!(
            check_transition(V, EnRoute, Acknowledged),
            Err(TransitionError::Backwards {
                from: EnRoute,
                to: Acknowledged
            })
        );
        assert_eq!(
            check_transition(V, Acknowledged, Acknowledged),
            Err(TransitionError::Unchanged(Acknowledged))
        );
        assert!(matches!(
            check_transition(V, EnRoute, Located),
            Err(TransitionError::WrongKind { .. })
        ));
        assert!(matches!(
            check_transition(P, EnRoute, Seized),
            Err(TransitionError::WrongKind { .. })
        ));
        assert_eq!(
            check_transition(V, Dispatched, Cancelled),
            Err(TransitionError::NotReportable(Cancelled))
        );
        assert_eq!(
            check_transition(V, Seized, Seized),
            Err(TransitionError::Unchanged(Seized))
        );
        let msg = check_transition(V, NotFound, Seized)
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "the task is closed (not_found); it cannot become seized"
        );
    }
}
