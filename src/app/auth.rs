//! Who may call the HTTP API: bearer tokens, their scopes, and the audit identity of a caller.
//!
//! A token is 256 bits from the operating system's generator, written as `lr_` and 64 hex
//! digits, and stored only as its SHA-256. A plain (unsalted, fast) hash is enough because a
//! token is random, not a password: there is no dictionary to try, and guessing a 256-bit
//! preimage is out of reach however fast the hash. Being fast and unsalted, it can be
//! looked up in a unique index, so checking a token costs one indexed read.

use std::fmt;

use chrono::{DateTime, Utc};
use rand::TryRngCore as _;
use sha2::Digest as _;

use crate::store::{AuditEntry, AuditResult, Store, StoreError, StoredToken};

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Targets, the audit log, every task.
    Admin,
    /// Metrics.
    Ops,
    /// One court's command center: the tasks it holds or requested, its own locate requests
    /// and sweeps of its own area.
    Court(String),
}

impl Scope {
    /// `admin`, `ops` or `court:{court_id}` (a court id as in the jurisdiction data: lower-case
    /// ASCII letters, digits and `_`).
    pub fn parse(text: &str) -> Result<Scope, String> {
        match text {
            "admin" => Ok(Scope::Admin),
            "ops" => Ok(Scope::Ops),
            _ => match text.strip_prefix("court:") {
                Some(court)
                    if !court.is_empty()
                        && court
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
                {
                    Ok(Scope::Court(court.to_string()))
                }
                _ => Err(format!(
                    "scope {text:?}: expected admin, ops or court:<court_id>"
                )),
            },
        }
    }

    /// The court of a `court:` scope.
    pub fn court(&self) -> Option<&str> {
        match self {
            Scope::Court(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Ops => f.write_str("ops"),
            Scope::Court(c) => write!(f, "court:{c}"),
        }
    }
}

/// The caller of an action: a token's name and scope, or a court's MQTT connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scope: Scope,
}

impl Principal {
    /// A command center reporting over MQTT on `dispatch/{court}/status`.
    pub fn mqtt_court(court: &str) -> Principal {
        Principal {
            name: format!("mqtt:{court}"),
            scope: Scope::Court(court.to_string()),
        }
    }

    /// Every caller of a service run with `--auth false`.
    pub fn unauthenticated() -> Principal {
        Principal {
            name: "unauthenticated".into(),
            scope: Scope::Admin,
        }
    }

    /// An audit row of this caller doing `action`; the caller fills in the rest.
    pub fn audit(&self, action: &str, result: AuditResult) -> AuditEntry {
        AuditEntry {
            actor: self.name.clone(),
            scope: self.scope.to_string(),
            action: action.to_string(),
            target_id: None,
            task_id: None,
            result,
            purpose: None,
            detail: None,
        }
    }
}

/// Why a token could not be made or revoked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token named {0:?} exists and is not revoked")]
    NameTaken(String),
    #[error("no live token named {0:?}")]
    NoSuchToken(String),
    #[error("token name: must be 1 to 200 characters, without control characters")]
    BadName,
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The stored form of a token: SHA-256 of its text, lower-case hex.
pub fn token_hash(token: &str) -> String {
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Makes a token named `name` with `scope`; returns its text, which is stored nowhere.
pub async fn create(
    store: &Store,
    name: &str,
    scope: &Scope,
    now: DateTime<Utc>,
) -> Result<String, TokenError> {
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(TokenError::BadName);
    }
    let mut secret = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut secret)
        .map_err(|e| TokenError::Random(e.to_string()))?;
    let mut token = String::with_capacity(67);
    token.push_str("lr_");
    for b in secret {
        token.push_str(&format!("{b:02x}"));
    }
    if !store
        .insert_token(name, &scope.to_string(), &token_hash(&token), now)
        .await?
    {
        return Err(TokenError::NameTaken(name.to_string()));
    }
    Ok(token)
}

/// Revokes the live token named `name`: from the next request on it is refused.
pub async fn revoke(store: &Store, name: &str, now: DateTime<Utc>) -> Result<(), TokenError> {
    if store.revoke_token(name, now).await? {
        Ok(())
    } else {
        Err(TokenError::NoSuchToken(name.to_string()))
    }
}

/// Every token, revoked ones included, without secrets.
pub async fn list(store: &Store) -> Result<Vec<StoredToken>, StoreError> {
    store.tokens().await
}

/// The caller a token stands for, or `None` when it is unknown or revoked. Checked against
/// the database on every request, so a revocation by another process (the CLI, another
/// replica) holds from its commit on.
pub async fn verify(store: &Store, token: &str) -> Result<Option<Principal>, StoreError> {
    let Some((name, scope)) = store.live_token(&token_hash(token)).await? else {
        return Ok(None);
    };
    match Scope::parse(&scope) {
        Ok(scope) => Ok(Some(Principal { name, scope })),
        Err(e) => Err(StoreError::Corrupt {
            what: "token scope",
            detail: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print_back() {
        for text in ["admin", "ops", "court:cixi", "court:ningbo_intermediate"] {
            assert_eq!(Scope::parse(text).unwrap().to_string(), text);
        }
        for bad in ["", "root", "court:", "court:Cixi", "court:a b", "Admin"] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
