//! Who may read `/metrics` while the database, where tokens are checked, does not answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::app::auth::{self, Principal, Scope};
use crate::store::{Store, StoreError};

/// Longest a scrape waits for the database to check a token it has seen before.
const SCRAPE_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The `ops` and `admin` tokens that have read `/metrics`, by hash, with their callers. Tokens
/// live in the database, yet the metrics matter most while it is unreachable (the gauge that
/// says so is among them): a scrape whose token the database cannot check now is let through
/// when the database last said that token may read metrics. A token the database says is
/// unknown or revoked is forgotten at once.
#[derive(Default)]
pub struct RecentScrapers {
    known: Mutex<HashMap<String, Principal>>,
}

impl RecentScrapers {
    pub async fn verify(
        &self,
        store: &Store,
        token: &str,
    ) -> Result<Option<Principal>, StoreError> {
        let hash = auth::token_hash(token);
        let known = self.lock().get(&hash).cloned();
        let checked = match known {
            // A scraper has a timeout of its own; the pool would wait 5 s for a connection.
            Some(_) => tokio::time::timeout(SCRAPE_CHECK_TIMEOUT, auth::verify(store, token))
                .await
                .unwrap_or(Err(StoreError::TimedOut(SCRAPE_CHECK_TIMEOUT))),
            None => auth::verify(store, token).await,
        };
        match checked {
            Ok(Some(caller)) => {
                if matches!(caller.scope, Scope::Admin | Scope::Ops) {
                    self.lock().insert(hash, caller.clone());
                }
                Ok(Some(caller))
            }
            Ok(None) => {
                self.lock().remove(&hash);
                Ok(None)
            }
            Err(e) if e.is_retryable() && known.is_some() => {
                tracing::debug!(error = %e, "token not checkable; a known scraper reads metrics");
                Ok(known)
            }
            Err(e) => Err(e),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Principal>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
