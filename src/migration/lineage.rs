//! A migration plan's treatment of a caller whose token stands for a root credential
//! ([`crate::identity::lineage`]): a credential retired in `enforce` is not let in again as a
//! token it was exchanged for.

use std::time::SystemTime;

use crate::identity::Credential;
use crate::migration::{self, Plan, Treatment};

/// How strict a treatment is. `observe` relaxes the controls, so it ranks below the full
/// pipeline: a root credential in `observe` never relaxes the token it was exchanged for.
fn severity(t: Treatment) -> u8 {
    match t {
        Treatment::Observe => 0,
        Treatment::Normal => 1,
        Treatment::Bridge => 2,
        Treatment::Refuse => 3,
    }
}

/// The plan's treatment of the caller: the stricter of the presented credential's and its root's,
/// so a retired credential stays retired in whatever token it was exchanged for. The credential
/// to name in a refusal is [`root_name`] when the root decided.
pub fn treatment(plan: Option<&Plan>, cred: &Credential, now: SystemTime) -> Treatment {
    let own = migration::treatment(plan, &cred.name, now);
    let Some(root) = cred.lineage.as_deref() else {
        return own;
    };
    let rooted = migration::treatment(plan, &root.credential, now);
    if severity(rooted) > severity(own) {
        rooted
    } else {
        own
    }
}

/// The credential a retired-refusal names: the root when it is the one the plan retires.
pub fn retired_name<'a>(plan: &Plan, cred: &'a Credential) -> &'a str {
    match cred.lineage.as_deref() {
        Some(l) if plan.retires(&l.credential) => &l.credential,
        _ => &cred.name,
    }
}
