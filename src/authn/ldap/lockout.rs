//! Lockout protection without lockout denial of service.
//!
//! Directories lock or revoke an account after a few bad passwords (RACF revokes the user id).
//! Left alone, anyone who can reach the gateway could revoke a production batch job's mainframe
//! account by sending it a few wrong passwords. So failures are counted here, per account and per
//! source address, in a fixed window (`max_failures` per `window`, starting at the first failure),
//! and checked BEFORE the directory is asked to bind.
//!
//! An account is the user's entry DN, lower-cased — what the directory locks — not the name as
//! typed: `Alice`, `ALICE` and `alice` find the same entry in a case-insensitive directory and
//! must share one count. (With search-then-bind the DN comes from the search, which cannot lock
//! anything; with a DN template it is computed locally.)
//!
//! - A password the gateway has not seen succeed for this user ("unknown") reaches the directory
//!   only while `failures + in_flight + reserve < max_failures`, where `reserve` is 1 when the
//!   user has a known-good password. Past that it is refused (401) without a round trip. Binds
//!   in flight count, so a burst of concurrent guesses cannot slip past the limit.
//! - The user's last known-good password (remembered only as a keyed digest, see `cache`) is
//!   still checked against the directory — re-bound, never served stale — so a password changed
//!   or an account revoked in the directory is honoured at once. It may use the one reserved
//!   failure: if that re-bind fails (the password was changed), the failure is counted and the
//!   known-good digest forgotten. Known-good re-binds for one user run one at a time; a second
//!   one waits for the first (whose success fills the cache) instead of being refused.
//! - Successes do not reset the failure count (unlike most directories): the guarantee is
//!   that the directory sees at most `max_failures` failed binds per user per window from this
//!   gateway, whatever the interleaving. Hence `max_failures` ≥ 2.
//! - Per source address, `max_source_failures` failures per window: then unknown passwords from
//!   that address are refused for every user (password spraying); known-good ones still pass.
//! - An account with a stored verifier of its last good password ([`super::verifier`], in the
//!   state store, so it outlives restarts and is shared by replicas) keeps the one reserved bind
//!   even when this process has not seen its password bind; once the budget is spent, a password
//!   matching the verifier gets that bind ([`Lockout::admit_verified`]) and every other one is
//!   refused here. Checks against the verifier are limited per (account, source).
//!
//! What this cannot do: an account with no verifier (its owner never bound through a gateway
//! sharing this state) has nothing to tell its owner from a guesser, so once its budget is spent
//! it is refused until the window ends; likewise a password changed in the directory while the
//! account is over its budget (the new one is unknown until the window ends). Each replica
//! keeps its own count; with a shared (Redis) state backend, failed binds per account are also
//! counted across replicas ([`Lockout::share`]), so N replicas let about `max_failures` plus
//! one per replica through instead of N × `max_failures`; the per-source counts stay per
//! replica (the listener's shared failure throttle covers sources).
//!
//! Memory is bounded: at most `capacity` users and `capacity` sources are tracked. When a table
//! is full, entries that carry nothing (no failures in a live window, nothing in flight, no
//! known-good digest) go first, then the least recently used.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::cache::Digest;

/// What to do with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Ask the directory; report back with [`Lockout::finish`].
    Ask { known_good: bool },
    /// Refuse without asking (the user's or the source's limit is reached).
    Refuse,
    /// The password is the known-good one, but a check of it is in flight: wait for it.
    Wait,
}

/// How an admitted attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Finish {
    Success,
    /// The directory refused the credential (`failed_bind`: a bind failed, which the directory
    /// counts against the account).
    Failure,
    /// The directory could not be asked; nothing is counted.
    Unavailable,
}

#[derive(Debug)]
struct UserState {
    window_start: SystemTime,
    failures: u32,
    in_flight: u32,
    known_good: Option<Digest>,
    /// The user name that last bound successfully (for revocation by name).
    principal: Option<String>,
    touched: SystemTime,
}

#[derive(Debug)]
struct SourceState {
    window_start: SystemTime,
    failures: u32,
}

/// Failure counts per user and per source.
#[derive(Debug)]
pub(super) struct Lockout {
    users: Mutex<HashMap<String, UserState>>,
    sources: Mutex<HashMap<IpAddr, SourceState>>,
    /// Passwords checked against stored verifiers, per (user, source).
    guesses: Mutex<HashMap<(String, IpAddr), SourceState>>,
    max_failures: u32,
    max_source_failures: u32,
    window: Duration,
    capacity: usize,
    /// Woken whenever an attempt finishes, for [`Admit::Wait`]ers.
    pub finished: tokio::sync::Notify,
    /// With a shared state backend: failed binds per account across replicas (see
    /// [`Lockout::share`]).
    shared: Option<std::sync::Arc<crate::limits::shared_failures::SharedFailures<String>>>,
}

fn expired(start: SystemTime, now: SystemTime, window: Duration) -> bool {
    now.duration_since(start).is_ok_and(|d| d >= window)
}

/// Count one failure for `key` in its window and return the count; the table holds at most
/// `capacity` keys (expired windows go first, then the oldest).
fn bump<K: std::hash::Hash + Eq + Clone>(
    table: &mut HashMap<K, SourceState>,
    key: K,
    now: SystemTime,
    window: Duration,
    capacity: usize,
) -> u32 {
    if !table.contains_key(&key) && table.len() >= capacity {
        table.retain(|_, s| !expired(s.window_start, now, window));
        if table.len() >= capacity {
            let oldest = table
                .iter()
                .min_by_key(|(_, s)| s.window_start)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                table.remove(&k);
            }
        }
    }
    let s = table.entry(key).or_insert(SourceState {
        window_start: now,
        failures: 0,
    });
    if expired(s.window_start, now, window) {
        s.window_start = now;
        s.failures = 0;
    }
    s.failures = s.failures.saturating_add(1);
    s.failures
}

impl Lockout {
    pub fn new(
        max_failures: u32,
        max_source_failures: u32,
        window: Duration,
        capacity: usize,
    ) -> Self {
        Lockout {
            users: Mutex::new(HashMap::new()),
            sources: Mutex::new(HashMap::new()),
            guesses: Mutex::new(HashMap::new()),
            max_failures,
            max_source_failures,
            window,
            capacity: capacity.max(1),
            finished: tokio::sync::Notify::new(),
            shared: None,
        }
    }

    /// Whether `other` counts against the same limits (then its counters can be taken over).
    pub fn same_limits(&self, other: &Lockout) -> bool {
        (
            self.max_failures,
            self.max_source_failures,
            self.window,
            self.capacity,
        ) == (
            other.max_failures,
            other.max_source_failures,
            other.window,
            other.capacity,
        )
    }

    /// Also count failed binds per account across replicas, in a shared bucket of
    /// `max_failures − 1` per window (the last one stays the owner's reserve, as here): an
    /// unknown password for an account whose shared budget is spent is refused like a local
    /// one. Needs a Tokio runtime. Redis unreachable: only the local count applies, as without
    /// Redis (see `docs/scale-out.md`).
    pub fn share(
        &mut self,
        credential: &str,
        lease: crate::limits::cluster::LeaseFn,
    ) -> Result<(), String> {
        let shared_budget = self.max_failures.saturating_sub(1).max(1);
        let rate = crate::limits::Rate::new(shared_budget, self.window)
            .ok_or("the lockout window must not be zero")?;
        self.shared = Some(crate::limits::shared_failures::SharedFailures::start(
            &format!("ldapfail:{credential}:"),
            lease,
            crate::limits::shared_failures::quota(rate, shared_budget),
            self.capacity,
            std::sync::Arc::new(crate::clock::SystemClock),
        )?);
        Ok(())
    }

    /// Whether other replicas' failures spent `user`'s shared budget.
    fn shared_locked(&self, user: &str, now: SystemTime) -> bool {
        self.shared.as_ref().is_some_and(|s| {
            let ns = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            s.blocked(&user.to_owned(), ns).is_some()
        })
    }

    /// Decide whether `user` (normalized) with the password digested as `pw` may be checked
    /// against the directory. An `Ask` must be followed by exactly one [`Lockout::finish`].
    ///
    /// `has_verifier`: the account has a stored verifier ([`super::verifier`]), so one bind is
    /// kept in reserve for its owner even when this process has not seen the password bind.
    pub fn admit(
        &self,
        user: &str,
        pw: &Digest,
        source: IpAddr,
        now: SystemTime,
        has_verifier: bool,
    ) -> Admit {
        let source_locked = self.source_locked(source, now);
        let Ok(mut users) = self.users.lock() else {
            return Admit::Refuse;
        };
        if !users.contains_key(user) && !self.make_room(&mut users, now) {
            return Admit::Refuse;
        }
        let st = users.entry(user.to_owned()).or_insert_with(|| UserState {
            window_start: now,
            failures: 0,
            in_flight: 0,
            known_good: None,
            principal: None,
            touched: now,
        });
        st.touched = now;
        if expired(st.window_start, now, self.window) {
            st.failures = 0;
            st.window_start = now;
        }
        let used = st.failures + st.in_flight;
        if st.known_good.is_some_and(|k| k.ct_eq(pw)) {
            if used < self.max_failures {
                st.in_flight += 1;
                return Admit::Ask { known_good: true };
            }
            // Another check is in flight (its success fills the cache): wait for it. With none
            // in flight the budget is spent: refuse.
            return if st.in_flight > 0 {
                Admit::Wait
            } else {
                Admit::Refuse
            };
        }
        let reserve = u32::from(st.known_good.is_some() || has_verifier);
        if source_locked || used + reserve >= self.max_failures || self.shared_locked(user, now) {
            return Admit::Refuse;
        }
        if st.failures == 0 && st.in_flight == 0 {
            // The window starts with the first attempt that can fail.
            st.window_start = now;
        }
        st.in_flight += 1;
        Admit::Ask { known_good: false }
    }

    /// The budget of `user` is spent and the password matched its stored verifier: admit it as
    /// known good (the reserved bind), or wait for one in flight. Must follow a refusal by
    /// [`Lockout::admit`] for the same attempt.
    pub fn admit_verified(&self, user: &str, now: SystemTime) -> Admit {
        let Ok(mut users) = self.users.lock() else {
            return Admit::Refuse;
        };
        let Some(st) = users.get_mut(user) else {
            return Admit::Refuse;
        };
        st.touched = now;
        if st.failures + st.in_flight < self.max_failures {
            st.in_flight += 1;
            Admit::Ask { known_good: true }
        } else if st.in_flight > 0 {
            Admit::Wait
        } else {
            Admit::Refuse
        }
    }

    /// Whether `source` may have one more password checked against `user`'s stored verifier:
    /// at most `max_failures` wrong ones per (user, source) per window, none from a source
    /// over its own limit. Counts the attempt; [`Lockout::verified`] takes it back on a match.
    pub fn verifier_guess(&self, user: &str, source: IpAddr, now: SystemTime) -> bool {
        if self.source_locked(source, now) {
            return false;
        }
        let Ok(mut guesses) = self.guesses.lock() else {
            return false;
        };
        bump(
            &mut guesses,
            (user.to_owned(), source),
            now,
            self.window,
            self.capacity,
        ) <= self.max_failures
    }

    /// The guess matched: it was the owner, not a guess.
    pub fn verified(&self, user: &str, source: IpAddr) {
        if let Ok(mut guesses) = self.guesses.lock() {
            if let Some(g) = guesses.get_mut(&(user.to_owned(), source)) {
                g.failures = g.failures.saturating_sub(1);
            }
        }
    }

    /// Record how an admitted attempt ended; `principal` is the user name as typed.
    #[expect(clippy::too_many_arguments, reason = "one caller, each value distinct")]
    pub fn finish(
        &self,
        user: &str,
        pw: &Digest,
        known_good: bool,
        principal: &str,
        source: IpAddr,
        how: Finish,
        now: SystemTime,
    ) {
        if let Ok(mut users) = self.users.lock() {
            if let Some(st) = users.get_mut(user) {
                st.in_flight = st.in_flight.saturating_sub(1);
                match how {
                    Finish::Success => {
                        st.known_good = Some(*pw);
                        st.principal = Some(principal.to_owned());
                    }
                    Finish::Failure => {
                        if let Some(s) = &self.shared {
                            s.note(user.to_owned());
                        }
                        if expired(st.window_start, now, self.window) {
                            st.failures = 0;
                            st.window_start = now;
                        }
                        st.failures = st.failures.saturating_add(1);
                        if known_good {
                            st.known_good = None;
                        }
                    }
                    Finish::Unavailable => {}
                }
            }
        }
        if how == Finish::Failure {
            self.count_source(source, now);
        }
        self.finished.notify_waiters();
    }

    /// A failure that did not reach a bind (no such user, or refused here) still counts
    /// against the source, so a sprayer gains nothing by trying unknown or locked users.
    pub fn source_failure(&self, source: IpAddr, now: SystemTime) {
        self.count_source(source, now);
    }

    /// Forget the known-good password of every account `principal` (case-insensitively) bound
    /// as (revocation); failure counts stay. Returns those accounts.
    pub fn forget_principal(&self, principal: &str) -> Vec<String> {
        let Ok(mut users) = self.users.lock() else {
            return Vec::new();
        };
        let mut accounts = Vec::new();
        for (account, st) in users.iter_mut() {
            if st
                .principal
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(principal))
            {
                st.known_good = None;
                st.principal = None;
                accounts.push(account.clone());
            }
        }
        accounts
    }

    fn source_locked(&self, source: IpAddr, now: SystemTime) -> bool {
        let Ok(sources) = self.sources.lock() else {
            return true;
        };
        sources.get(&source).is_some_and(|s| {
            !expired(s.window_start, now, self.window) && s.failures >= self.max_source_failures
        })
    }

    fn count_source(&self, source: IpAddr, now: SystemTime) {
        let Ok(mut sources) = self.sources.lock() else {
            return;
        };
        bump(&mut sources, source, now, self.window, self.capacity);
    }

    /// Make room for one more user; false when every tracked user has a check in flight.
    fn make_room(&self, users: &mut HashMap<String, UserState>, now: SystemTime) -> bool {
        if users.len() < self.capacity {
            return true;
        }
        let window = self.window;
        users.retain(|_, s| {
            s.in_flight > 0
                || s.known_good.is_some()
                || (s.failures > 0 && !expired(s.window_start, now, window))
        });
        if users.len() < self.capacity {
            return true;
        }
        let lru = users
            .iter()
            .filter(|(_, s)| s.in_flight == 0)
            .min_by_key(|(_, s)| s.touched)
            .map(|(k, _)| k.clone());
        match lru {
            Some(k) => {
                users.remove(&k);
                true
            }
            None => false,
        }
    }

    /// Users tracked.
    #[cfg(test)]
    pub fn tracked_users(&self) -> usize {
        self.users.lock().map(|u| u.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
