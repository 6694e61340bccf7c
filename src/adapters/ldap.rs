//! LDAP adapters: how one kind of directory finds a user and lists its groups, as data. This
//! module only loads and checks them; binding is the LDAP authenticator's business, which must
//! still escape `{user}` (RFC 4514 in a DN, RFC 4515 in a filter) whatever the adapter allows.

use serde::Deserialize;

use crate::diag::Collector;

/// How the user's DN is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindMode {
    /// Build the DN from `dn_template` and bind with it (no search account needed).
    DnTemplate,
    /// Bind with the search account, find the entry with `user_filter`, then bind as it.
    Search,
}

/// What is done to the user name before it is used (and mapped to an identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserCase {
    Lower,
    Upper,
    Preserve,
}

/// How the directory compares user names, and therefore the one spelling of an LDAP principal
/// the gateway uses everywhere after authentication (revocations, inventory, lockout, bind
/// cache, audit, the minted token's `legacy` claim). `Alice` and `alice` find the same entry in
/// a case-insensitive directory, so they must be one principal, or revoking one spelling would
/// leave the others working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrincipalCase {
    /// Case-insensitive directory, principal lower-cased (the default: LDAP's usual matching
    /// rules for `uid`, `cn`, `sAMAccountName` ignore case).
    #[default]
    Lower,
    /// Case-insensitive directory, principal upper-cased (RACF user ids).
    Upper,
    /// The directory compares names exactly: the principal is the name as normalized.
    Exact,
}

impl PrincipalCase {
    /// The canonical principal of a user name the adapter accepted. ASCII case only: a
    /// principal must also map to an identity, which admits ASCII names only, so no Unicode
    /// folding (`K` U+212A → `k`) can merge a non-ASCII name into another user's principal.
    pub fn apply(self, user: &str) -> String {
        match self {
            PrincipalCase::Lower => user.to_ascii_lowercase(),
            PrincipalCase::Upper => user.to_ascii_uppercase(),
            PrincipalCase::Exact => user.to_owned(),
        }
    }
}

/// How a value of the group attribute becomes a group name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupValue {
    /// A DN is reduced to its first RDN's value (`cn=ops,ou=groups,…` → `ops`); a plain name is
    /// kept as is.
    #[default]
    FirstRdn,
    /// The value as the directory returns it.
    AsIs,
}

/// A validated LDAP adapter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapAdapter {
    #[serde(skip)]
    name: String,
    description: Option<String>,
    bind: BindMode,
    /// With `bind = "dn-template"`: contains `{user}` once, and may contain `{base_dn}`.
    dn_template: Option<String>,
    /// With `bind = "search"`: an RFC 4515 filter containing `{user}`.
    user_filter: Option<String>,
    /// The attribute of the user entry that lists its groups; none: no groups.
    group_attribute: Option<String>,
    #[serde(default)]
    group_value: GroupValue,
    user_case: UserCase,
    /// How the directory compares names: the principal's one spelling.
    #[serde(default)]
    principal_case: PrincipalCase,
    /// Longest user name accepted (checked before the directory is asked).
    max_user_len: usize,
    /// When set, user names may only contain ASCII letters, digits and these characters.
    user_extra_chars: Option<String>,
}

impl LdapAdapter {
    /// The adapter's name (its file name without `.toml`).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// One line for `portcullis check`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// How the user's DN is found.
    pub fn bind(&self) -> BindMode {
        self.bind
    }
    /// The DN template (`bind = "dn-template"`); placeholders `{user}` and `{base_dn}`.
    pub fn dn_template(&self) -> Option<&str> {
        self.dn_template.as_deref()
    }
    /// The search filter (`bind = "search"`); placeholder `{user}`.
    pub fn user_filter(&self) -> Option<&str> {
        self.user_filter.as_deref()
    }
    /// The attribute listing the user's groups.
    pub fn group_attribute(&self) -> Option<&str> {
        self.group_attribute.as_deref()
    }
    /// How a group attribute value becomes a group name.
    pub fn group_value(&self) -> GroupValue {
        self.group_value
    }
    /// Case folding of user names.
    pub fn user_case(&self) -> UserCase {
        self.user_case
    }
    /// How the directory compares user names.
    pub fn principal_case(&self) -> PrincipalCase {
        self.principal_case
    }
    /// Longest user name accepted.
    pub fn max_user_len(&self) -> usize {
        self.max_user_len
    }
    /// Characters allowed in user names besides ASCII letters and digits; `None`: any
    /// non-control character.
    pub fn user_extra_chars(&self) -> Option<&str> {
        self.user_extra_chars.as_deref()
    }

    /// Apply the adapter's case and character rules; `None` when the name is not acceptable
    /// (see [`normalize_user`]).
    pub fn normalize_user(&self, user: &str) -> Option<String> {
        normalize_user(
            user,
            self.user_case,
            self.max_user_len,
            self.user_extra_chars.as_deref(),
        )
    }
}

/// The user name as used for binding, caching, lockout and identity, or `None` when it is not
/// acceptable: empty, longer than `max_len` characters, control characters, surrounding spaces
/// (directories ignore them when matching names; no real user has them), or characters outside
/// ASCII letters, digits and `extra` (when set).
pub fn normalize_user(
    user: &str,
    case: UserCase,
    max_len: usize,
    extra: Option<&str>,
) -> Option<String> {
    let len = user.chars().count();
    if len == 0 || len > max_len || user.chars().any(char::is_control) || user.trim() != user {
        return None;
    }
    if let Some(extra) = extra {
        if !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        {
            return None;
        }
    }
    Some(match case {
        UserCase::Lower => user.to_lowercase(),
        UserCase::Upper => user.to_uppercase(),
        UserCase::Preserve => user.to_owned(),
    })
}

/// Check a `family = "ldap"` table (without its `family` key) and build the adapter.
pub(super) fn from_toml(
    name: &str,
    value: toml::Value,
    p: &mut Collector<'_>,
) -> Option<LdapAdapter> {
    let mut a: LdapAdapter = super::deserialize(value, p)?;
    a.name = name.to_owned();
    match (a.bind, &a.dn_template, &a.user_filter) {
        (BindMode::DnTemplate, Some(t), None) => {
            if t.matches("{user}").count() != 1 {
                p.push("dn_template", "must contain {user} exactly once");
            }
            if let Some(bad) = unknown_placeholder(t, &["{user}", "{base_dn}"]) {
                p.push("dn_template", format!("unknown placeholder `{bad}`"));
            }
        }
        (BindMode::DnTemplate, _, _) => p.push(
            "dn_template",
            "bind = \"dn-template\" needs dn_template and no user_filter",
        ),
        (BindMode::Search, None, Some(f)) => {
            if !f.contains("{user}") {
                p.push("user_filter", "must contain {user}");
            }
            if !(f.starts_with('(') && f.ends_with(')')) {
                p.push("user_filter", "must be a parenthesized LDAP filter");
            }
            if let Some(bad) = unknown_placeholder(f, &["{user}"]) {
                p.push("user_filter", format!("unknown placeholder `{bad}`"));
            }
        }
        (BindMode::Search, _, _) => p.push(
            "user_filter",
            "bind = \"search\" needs user_filter and no dn_template",
        ),
    }
    if !(1..=1024).contains(&a.max_user_len) {
        p.push("max_user_len", "must be between 1 and 1024");
    }
    if let Some(extra) = &a.user_extra_chars {
        if !extra.chars().all(|c| c.is_ascii_punctuation()) {
            p.push("user_extra_chars", "must be ASCII punctuation only");
        }
    }
    if let Some(attr) = &a.group_attribute {
        let ok = attr.starts_with(|c: char| c.is_ascii_alphabetic())
            && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            p.push("group_attribute", "must be an LDAP attribute name");
        }
    }
    p.is_ok().then_some(a)
}

/// The first `{…}` in `s` that is not one of `known`.
fn unknown_placeholder<'a>(s: &'a str, known: &[&str]) -> Option<&'a str> {
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let tail = rest.get(open..)?;
        let end = tail.find('}').map_or(tail.len(), |c| c + 1);
        let ph = tail.get(..end)?;
        if !known.contains(&ph) {
            return Some(ph);
        }
        rest = tail.get(end..)?;
    }
    None
}
