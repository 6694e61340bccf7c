//! The last good password of each LDAP account, as a slow salted verifier in the state store, so
//! that a stranger spending an account's failure budget cannot lock its owner out.
//!
//! [`super::lockout`] keeps the directory from ever seeing more than `max_failures` failed binds
//! per account per window. Without more, the first `max_failures` guesses of anyone would shut
//! the owner out for the window: the gateway could not tell the owner's password from a guess
//! without asking the directory. The in-memory known-good digest helps only for passwords seen
//! by this process since it started. This verifier outlives restarts and is shared by replicas
//! (embedded: the SQLite file; redis: every replica).
//!
//! - Written after a bind with a password not already known good succeeds (so at most once per
//!   account and password per process), deleted when a known-good password fails to bind (it
//!   was changed in the directory).
//! - Read when an account is looked at: an account that has one keeps one bind of its budget in
//!   reserve for it. Once the budget is spent, a password is checked against the verifier — at
//!   most `max_failures` guesses per (account, source) per window, none from a source over its
//!   own limit — and only a match goes on to the reserved bind. A wrong guess is refused there,
//!   without touching the directory.
//! - A match is not accepted on the verifier alone: it still binds (with the reserved slot), so a
//!   password changed or an account disabled in the directory is refused at once; the directory
//!   still sees at most `max_failures` failed binds per window.
//!
//! Argon2id with the OWASP parameters (m = 19 MiB, t = 2, p = 1, 32-byte output, 16-byte random
//! salt; about 20–50 ms and 19 MiB per check), one check at a time per credential: the cost only
//! arises on the throttled path and after a new password binds, and is bounded. The hash input
//! includes the credential and account, so a verifier copied to another account's key does not
//! verify there. Stored: `argon2id$v=19$m=19456,t=2,p=1$<salt hex>$<hash hex>`; any other
//! parameters are ignored (a planted verifier cannot make the gateway do more work).

use std::sync::Arc;
use std::time::Instant;

use argon2::{Algorithm, Argon2, Params, Version};
use subtle::ConstantTimeEq;

use crate::state::StateStore;

/// The stored prefix: the only parameters this gateway checks.
const PREFIX: &str = "argon2id$v=19$m=19456,t=2,p=1$";
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;

/// The verifiers of one LDAP credential.
pub(super) struct Verifiers {
    store: Arc<dyn StateStore>,
    credential: Arc<str>,
    /// One Argon2 computation at a time for this credential.
    permit: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Verifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifiers")
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

/// Argon2id, OWASP parameters (`Params::DEFAULT` is m = 19 MiB, t = 2, p = 1).
fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::DEFAULT)
}

/// The hashed input: the key (length-prefixed) then the password.
fn input(key: &str, password: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + key.len() + password.len());
    v.extend_from_slice(&(key.len() as u64).to_be_bytes());
    v.extend_from_slice(key.as_bytes());
    v.extend_from_slice(password.as_bytes());
    v
}

/// A new verifier of `password` under `key`.
fn hash(key: &str, password: &str) -> Option<String> {
    let salt: [u8; SALT_LEN] = rand::random();
    let mut out = [0u8; HASH_LEN];
    argon2()
        .hash_password_into(&input(key, password), &salt, &mut out)
        .ok()?;
    Some(format!(
        "{PREFIX}{}${}",
        hex::encode(salt),
        hex::encode(out)
    ))
}

/// Whether `password` matches `stored` under `key`; false for anything not in this format.
fn matches(key: &str, password: &str, stored: &str) -> bool {
    let Some((salt, want)) = stored
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('$'))
    else {
        return false;
    };
    let (Ok(salt), Ok(want)) = (hex::decode(salt), hex::decode(want)) else {
        return false;
    };
    if salt.len() != SALT_LEN || want.len() != HASH_LEN {
        return false;
    }
    let mut out = [0u8; HASH_LEN];
    if argon2()
        .hash_password_into(&input(key, password), &salt, &mut out)
        .is_err()
    {
        return false;
    }
    out.ct_eq(want.as_slice()).into()
}

impl Verifiers {
    pub fn new(store: Arc<dyn StateStore>, credential: Arc<str>) -> Self {
        Verifiers {
            store,
            credential,
            permit: tokio::sync::Semaphore::new(1),
        }
    }

    fn key(&self, account: &str) -> String {
        format!("{}:{account}", self.credential)
    }

    /// The stored verifier of `account`; `None` also when the store cannot answer (then the
    /// lockout works as without verifiers: fail closed).
    pub async fn get(&self, account: &str) -> Option<String> {
        match self.store.password_verifier(&self.key(account)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(credential = %self.credential, error = %e, "password verifier not readable");
                None
            }
        }
    }

    /// Whether `password` matches `stored`, computed off the async threads, one at a time;
    /// `None` when no computation could start before `deadline`.
    pub async fn check(
        &self,
        account: &str,
        password: &str,
        stored: String,
        deadline: Instant,
    ) -> Option<bool> {
        let _permit = tokio::time::timeout_at(deadline.into(), self.permit.acquire())
            .await
            .ok()?
            .ok()?;
        let key = self.key(account);
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || matches(&key, &password, &stored))
            .await
            .ok()
    }

    /// Remember `password` as `account`'s last good one (after it bound).
    pub async fn remember(&self, account: &str, password: &str) {
        let Ok(_permit) = self.permit.acquire().await else {
            return;
        };
        let key = self.key(account);
        let pw = password.to_owned();
        let Ok(Some(phc)) = tokio::task::spawn_blocking(move || hash(&key, &pw)).await else {
            return;
        };
        if let Err(e) = self
            .store
            .set_password_verifier(&self.key(account), Some(&phc))
            .await
        {
            tracing::warn!(credential = %self.credential, error = %e, "password verifier not stored");
        }
    }

    /// Forget `account`'s verifier (its known-good password no longer binds).
    pub async fn forget(&self, account: &str) {
        if let Err(e) = self
            .store
            .set_password_verifier(&self.key(account), None)
            .await
        {
            tracing::warn!(credential = %self.credential, error = %e, "password verifier not deleted");
        }
    }
}

#[cfg(test)]
mod tests;
