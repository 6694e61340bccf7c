//! Who a caller is, in the vocabulary every mechanism shares: SPIFFE IDs and trust domains
//! ([`id`]), the credential that checked out ([`Credential`], its [`Kind`]), the caller a route
//! sees ([`Caller`]) and, for a presented token, what it stands for ([`lineage`]). Authentication
//! produces these; authorization, limits, migration, state and token minting read them without
//! knowing how they were checked.

pub mod id;
pub mod lineage;
pub mod profile;

use std::sync::Arc;

pub use id::{IdError, SpiffeId, TrustDomain};

/// How a caller authenticated (`amr` in minted tokens, `kind` in audit and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Mtls,
    JwtSvid,
    Ldap,
    ApiKey,
    Webhook,
}

impl Kind {
    /// As written in config, audit lines, metrics and `amr`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Mtls => "mtls",
            Kind::JwtSvid => "jwt-svid",
            Kind::Ldap => "ldap",
            Kind::ApiKey => "api-key",
            Kind::Webhook => "webhook",
        }
    }

    /// Static secrets that migration plans retire.
    pub const fn is_legacy(self) -> bool {
        matches!(self, Kind::Ldap | Kind::ApiKey | Kind::Webhook)
    }
}

/// A credential that checked out.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The credential's config name (`racf`, `partner-keys`, …).
    pub name: Arc<str>,
    pub kind: Kind,
    /// The caller's SPIFFE ID.
    pub identity: String,
    /// Legacy user or key id; never a secret.
    pub principal: Option<String>,
    /// Group names and similar, for policy.
    pub groups: Vec<String>,
    /// The `jti` of a presented JWT (JWT-SVID or an exchanged gateway token), so that
    /// `portcullis revoke --jti` refuses that token at once, not only when it expires.
    pub jti: Option<Arc<str>>,
    /// For a presented JWT: the root credential and chain it stands for (see [`lineage`]).
    pub lineage: Option<Arc<lineage::Lineage>>,
}

/// Who the caller is, as far as the route is concerned.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The route accepts no credentials (an explicit pass-through route).
    Anonymous,
    /// Shared rather than copied: the request's trace holds it too, for the audit line, which
    /// takes it back without a copy once the permit that carried it is gone (issue 22).
    Authenticated(Arc<Credential>),
}

impl Caller {
    /// The credential, if any.
    pub fn credential(&self) -> Option<&Credential> {
        match self {
            Caller::Anonymous => None,
            Caller::Authenticated(c) => Some(c.as_ref()),
        }
    }

    /// The credential as shared, if any.
    pub fn shared(&self) -> Option<&Arc<Credential>> {
        match self {
            Caller::Anonymous => None,
            Caller::Authenticated(c) => Some(c),
        }
    }
}
