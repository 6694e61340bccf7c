//! Header hygiene in both directions. Order matters: headers a caller names in `Connection` are
//! withheld from what the caller sent *before* the gateway adds its own, so no caller can make
//! the gateway drop `Forwarded`, `X-Request-Id` or a minted `Authorization`.
//!
//! Towards the upstream the caller's map is not edited: [`to_upstream`] describes the head
//! ([`UpstreamHead`]: which caller fields are withheld, decided in one pass over the names, and
//! the gateway's own fields), and the client writes it from that description. On the wire the
//! caller's fields come first, in the caller's order minus the withheld ones, then the
//! gateway's (`Forwarded`, `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`,
//! `X-Request-Id`, `Host`, then the minted token, an injected credential and the trace fields).

use std::cell::Cell;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

use crate::conn::Hop;

/// Whether a lower-case field name is hop-by-hop (RFC 9110 §7.6.1), or one of the legacy ones
/// proxies must not forward either: the one list, for `HeaderName`s ([`is_hop_by_hop`]) and for
/// the relayed answer's raw names (`proxy::pool::Relayed`).
pub(crate) fn is_hop_by_hop_name(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection"
            | b"te"
            | b"trailer"
            | b"transfer-encoding"
            | b"upgrade"
            | b"proxy-authorization"
            | b"proxy-authenticate"
            | b"keep-alive"
            | b"proxy-connection"
    )
}

/// Defines [`IDENTITY_NAMES`] and `is_listed_name` from one list: membership is one `match`
/// (compiled to a switch on the length, then a comparison or two), not a scan of 32 names.
macro_rules! identity_names {
    ($($name:literal),* $(,)?) => {
        /// Headers that legacy applications, web-server auth modules and other proxies trust to
        /// say who the caller is (set by an authenticating front proxy: Apache `REMOTE_USER`,
        /// oauth2-proxy, mod_ssl/nginx client-certificate variables, cloud identity-aware
        /// proxies). A caller must never be able to send them: the gateway alone speaks for
        /// identity. Compared in [`normalized`] form.
        #[cfg_attr(
            not(test),
            expect(dead_code, reason = "the list as data is for the tests; lookups use `is_listed_name`")
        )]
        const IDENTITY_NAMES: &[&str] = &[$($name),*];

        /// Whether `n` (normalized) is one of [`IDENTITY_NAMES`].
        fn is_listed_name(n: &str) -> bool {
            matches!(n, $($name)|*)
        }
    };
}

identity_names![
    "remote-user",
    "remote-groups",
    "auth-user",
    "x-remote-user",
    "x-remote-groups",
    "x-remote-group",
    "x-remote-email",
    "x-remote-name",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-forwarded-client-cert",
    "x-authenticated-user",
    "x-authenticated-userid",
    "x-authenticated-groups",
    "x-authenticated-scope",
    "x-auth-user",
    "x-webauth-user",
    "x-proxy-user",
    "x-user",
    "x-username",
    "x-user-id",
    "x-user-email",
    "x-user-groups",
    "x-client-cert",
    "x-client-dn",
    "x-client-verify",
    "x-jwt-assertion",
    // Not identities, but read the same CGI way: `Proxy_Authorization` would pass the
    // hop-by-hop strip, and `Proxy` becomes `HTTP_PROXY` (httpoxy).
    "proxy-authorization",
    "proxy",
];

/// Prefixes of families of such headers (`X-SSL-Client-S-DN`, `X-Auth-Request-Email`, …).
const IDENTITY_PREFIXES: &[&str] = &[
    "x-portcullis-",
    "x-ssl-client-",
    "ssl-client-",
    "x-client-cert-",
    "x-auth-request-",
    "x-remote-user-",
    "x-ms-client-principal",
    "x-goog-authenticated-user-",
    "x-amzn-oidc-",
    "cf-access-",
];

/// The name as a CGI-style reader sees it: nginx, PHP and CGI map `X_Remote_User` and
/// `X-Remote-User` to the same variable (`HTTP_X_REMOTE_USER`), so `_` counts as `-`.
/// ([`HeaderName`]s are already lower case.)
fn normalized(name: &HeaderName) -> std::borrow::Cow<'_, str> {
    let n = name.as_str();
    if n.contains('_') {
        std::borrow::Cow::Owned(n.replace('_', "-"))
    } else {
        std::borrow::Cow::Borrowed(n)
    }
}

/// The first two bytes of every entry of [`IDENTITY_NAMES`] and [`IDENTITY_PREFIXES`] (a unit
/// test keeps them in step): the names a caller usually sends (`host`, `accept`, `user-agent`,
/// `content-type`) are told apart from every identity name by these two bytes, without 42
/// comparisons each (issue 22).
const IDENTITY_LEADS: &[[u8; 2]] = &[*b"x-", *b"re", *b"au", *b"pr", *b"ss", *b"cf"];

fn is_identity_name(n: &str) -> bool {
    let lead = match n.as_bytes() {
        [a, b, ..] => [*a, *b],
        _ => return false,
    };
    IDENTITY_LEADS.contains(&lead)
        && (is_listed_name(n) || IDENTITY_PREFIXES.iter().any(|p| n.starts_with(p)))
}

/// Headers a caller could use to claim an identity; the gateway alone speaks for identity.
pub fn is_identity_claim(name: &HeaderName) -> bool {
    is_identity_name(&normalized(name))
}

/// A route's `upstream.strip_headers`: further caller headers never forwarded, by name or by
/// prefix (`"x-legacy-*"`), compared like the built-in list (case and `_`/`-` do not matter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StripList {
    names: Vec<String>,
    prefixes: Vec<String>,
}

impl StripList {
    /// No extra headers.
    pub const EMPTY: StripList = StripList {
        names: Vec::new(),
        prefixes: Vec::new(),
    };

    /// Parse the configured entries; the error names the first bad one.
    pub fn parse(entries: &[String]) -> Result<StripList, String> {
        let mut list = StripList::default();
        for e in entries {
            let (stem, prefix) = match e.strip_suffix('*') {
                Some(stem) => (stem, true),
                None => (e.as_str(), false),
            };
            let name = HeaderName::from_bytes(stem.as_bytes())
                .ok()
                .filter(|_| !stem.contains('*'))
                .ok_or_else(|| format!("{e:?}: not a header name (or a prefix ending in *)"))?;
            let n = normalized(&name).into_owned();
            // Compared normalized: `Transfer_Encoding` is the same name to a CGI-style reader.
            if !prefix && ["host", "content-length", "transfer-encoding"].contains(&n.as_str()) {
                return Err(format!("{e:?}: carries framing; it cannot be stripped"));
            }
            if prefix {
                list.prefixes.push(n);
            } else {
                list.names.push(n);
            }
        }
        Ok(list)
    }

    fn matches(&self, n: &str) -> bool {
        self.names.iter().any(|x| x == n) || self.prefixes.iter().any(|p| n.starts_with(p.as_str()))
    }
}

/// What [`to_upstream`] removes besides hop-by-hop headers and identity claims.
#[derive(Debug, Clone, Copy)]
pub struct Strip<'a> {
    /// The route's `upstream.strip_headers`.
    pub route: &'a StripList,
    /// The caller's own `Authorization` (every translated request: the upstream gets the
    /// gateway's credential there or none; only `observe` forwards the caller's unchanged).
    pub authorization: bool,
}

/// Headers the gateway itself sets or that carry framing: config may not name them as the place
/// for a minted token or an injected credential.
pub fn is_reserved(name: &HeaderName) -> bool {
    is_hop_by_hop(name)
        || is_identity_claim(name)
        || [
            header::HOST,
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::FORWARDED,
            header::COOKIE,
        ]
        .contains(name)
        || matches!(
            name.as_str(),
            "x-request-id" | "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host"
        )
}

/// Names listed in `Connection` (lower-cased tokens).
fn connection_tokens(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Whether `name` is a hop-by-hop header (without those a `Connection` field may list).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    is_hop_by_hop_name(name.as_str().as_bytes())
}

/// What [`remove_where`] saw of the list headers the gateway appends to: whether the caller's
/// map still holds them after the removal.
#[derive(Debug, Clone, Copy, Default)]
struct Kept {
    forwarded: bool,
    forwarded_for: bool,
}

/// The names `doomed` picks plus those named in `Connection`, found in one pass over the names
/// present. (A typical request has a handful of names; looking each candidate up instead would
/// hash a dozen names that are not there.) The same pass notes whether `Forwarded` and
/// `X-Forwarded-For` stay, so that appending to them needs no look-up when the caller sent none
/// (the usual case), and finds `Connection` without hashing it.
fn doomed_names(
    h: &HeaderMap,
    doomed: impl Fn(&HeaderName) -> bool,
) -> (SmallVec<[HeaderName; 4]>, Kept) {
    // In the order of the map. Inline room for the usual one or two (`Host`) without
    // allocating.
    let mut gone: SmallVec<[HeaderName; 4]> = SmallVec::new();
    let (mut connection, mut kept) = (false, Kept::default());
    for n in h.keys() {
        if n == header::CONNECTION {
            connection = true;
        }
        if doomed(n) {
            gone.push(n.clone());
        } else if n == header::FORWARDED {
            kept.forwarded = true;
        } else if n == X_FORWARDED_FOR {
            kept.forwarded_for = true;
        }
    }
    if connection {
        let named = connection_tokens(h);
        gone = h
            .keys()
            .filter(|n| gone.contains(n) || named.contains(n))
            .cloned()
            .collect();
        kept.forwarded &= !named.contains(&header::FORWARDED);
        kept.forwarded_for &= !named.contains(&X_FORWARDED_FOR);
    }
    (gone, kept)
}

/// Remove every header `doomed` picks plus those named in `Connection` ([`doomed_names`]).
fn remove_where(h: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) -> Kept {
    let (gone, kept) = doomed_names(h, doomed);
    for name in gone {
        h.remove(name);
    }
    kept
}

/// Remove hop-by-hop headers and those named in `Connection`, in place.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let _ = remove_where(h, is_hop_by_hop);
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request head an upstream receives, described rather than built (issue 22): the caller's
/// fields as parsed, the names of those withheld, and the gateway's own fields. Editing the
/// caller's map into the upstream's (a removal and an insertion, each a hash, per field the
/// gateway sets) only for the client to walk it once more cost about 4k instructions a request.
///
/// The fields go out in this order: the caller's, in the order of the caller's map (the order
/// they were parsed in, each name's repeated fields together; a credential an authenticator
/// removed first, `strip` of the route's `accept`, moves the map's last name into its place),
/// minus the withheld ones; then the gateway's own, in the order they were set. Before, a
/// removal moved the map's last name into the freed slot, so the order was not the caller's
/// either. [`UpstreamHead::fields`] is the one description both clients write from: the own
/// HTTP/1.1 client writes it directly, hyper's (https upstreams) gets [`UpstreamHead::into_map`].
#[derive(Debug, Default)]
pub struct UpstreamHead {
    /// The caller's fields, never edited here.
    caller: HeaderMap,
    /// Names of the caller's fields that are not forwarded (each present in `caller`, once).
    withheld: SmallVec<[HeaderName; 4]>,
    /// The gateway's fields (each name once), written after the caller's.
    own: SmallVec<[(HeaderName, HeaderValue); 8]>,
}

impl UpstreamHead {
    /// The caller's map, emptied, in place of `answer` (the answer's map, for its own fields),
    /// which takes its place here: the map then goes round, request to answer to the
    /// connection's next request, without a table allocated and freed for each (issue 22), and
    /// the answer's empty, unallocated map is not dropped here and a new one made in its place.
    /// Only once the head was written: the fields are gone after this.
    pub fn hand_over(&mut self, answer: &mut HeaderMap) {
        self.caller.clear();
        std::mem::swap(&mut self.caller, answer);
    }

    /// The caller's fields forwarded as they are (nothing withheld, nothing added).
    pub fn verbatim(caller: HeaderMap) -> Box<UpstreamHead> {
        described(caller, SmallVec::new())
    }

    /// Done with: kept, emptied, as this thread's next request's description (`SPARE`). Every
    /// field is emptied here and set again when it is taken, so nothing of this request's head
    /// reaches the next (another caller's, possibly). The caller's map, when still here (a
    /// failed exchange), is dropped with its fields; the one a sent head leaves behind (the
    /// answer's, [`Self::hand_over`]) is empty.
    pub fn recycle(mut self: Box<Self>) {
        if !self.caller.is_empty() || self.caller.capacity() != 0 {
            self.caller = HeaderMap::new();
        }
        self.withheld.clear();
        self.own.clear();
        // One kept per thread: one kept before (two heads were alive at once) is dropped.
        SPARE.set(Some(self));
    }

    fn is_withheld(&self, name: &HeaderName) -> bool {
        self.withheld.iter().any(|w| w == name)
    }

    /// Withhold the caller's `name` fields, when it sent any. (A scan of the few names present:
    /// cheaper than hashing one.)
    pub fn withhold(&mut self, name: &HeaderName) {
        if !self.is_withheld(name) && self.caller.keys().any(|n| n == name) {
            self.withheld.push(name.clone());
        }
    }

    /// Set the gateway's `name` field, in place of the caller's and of one set before (what
    /// `HeaderMap::insert` did to the edited map).
    pub fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.withhold(&name);
        match self.own.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.own.push((name, value)),
        }
    }

    /// Every field the upstream receives, in the order written: the caller's not withheld, then
    /// the gateway's.
    pub fn fields(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        let any_withheld = !self.withheld.is_empty();
        self.caller
            .iter()
            .filter(move |(n, _)| !(any_withheld && self.is_withheld(n)))
            .chain(self.own.iter().map(|(n, v)| (n, v)))
    }

    /// Call `f` with every field the upstream receives, in the order of [`Self::fields`]: two
    /// plain loops, without the chained iterator's state checks per field (the HTTP/1.1
    /// client writes the head with it, issue 22).
    pub fn for_each_field(&self, mut f: impl FnMut(&HeaderName, &HeaderValue)) {
        if self.withheld.is_empty() {
            for (n, v) in &self.caller {
                f(n, v);
            }
        } else {
            for (n, v) in &self.caller {
                if !self.is_withheld(n) {
                    f(n, v);
                }
            }
        }
        for (n, v) in &self.own {
            f(n, v);
        }
    }

    /// The values of `name` the upstream receives.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a HeaderValue> {
        self.fields()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The same fields as a map, for hyper's client (https upstreams): the withheld names
    /// removed from the caller's map, the gateway's fields inserted.
    pub fn into_map(self: Box<Self>) -> HeaderMap {
        let UpstreamHead {
            mut caller,
            withheld,
            own,
        } = *self;
        for name in withheld {
            caller.remove(name);
        }
        for (name, value) in own {
            caller.insert(name, value);
        }
        caller
    }
}

impl crate::telemetry::TraceFields for UpstreamHead {
    fn remove(&mut self, name: &HeaderName) {
        self.withhold(name);
        self.own.retain(|(n, _)| n != name);
    }

    fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        self.set(name, value);
    }
}

/// Describe the upstream's head from the caller's fields: withhold hop-by-hop headers, identity
/// claims and what `strip` names (and the caller's `Host`, `X-Forwarded-Proto`/`-Host` and
/// `X-Request-Id`, which the gateway sets), fold the caller's `Forwarded`/`X-Forwarded-For`
/// into the gateway's appended values, and set `X-Forwarded-Proto`/`-Host`, `X-Request-Id` and
/// `Host`.
pub fn to_upstream(
    caller: HeaderMap,
    hop: &Hop,
    host: Option<&str>,
    request_id: &HeaderValue,
    upstream_host: &HeaderValue,
    strip: Strip<'_>,
) -> Box<UpstreamHead> {
    let (withheld, kept) = doomed_names(&caller, |n| {
        is_hop_by_hop(n)
            || n == header::HOST
            || n == X_FORWARDED_PROTO
            || n == X_FORWARDED_HOST
            || n == X_REQUEST_ID
            || withheld(n, &strip)
    });
    let mut head = described(caller, withheld);
    // The names set below are withheld from the caller by the pass above, or (the two lists)
    // when folded, and each is set once: pushed without a look-up.
    let (forwarded, forwarded_host) = hop.for_host(host);
    fold_list(&mut head, kept.forwarded, &header::FORWARDED, forwarded);
    fold_list(
        &mut head,
        kept.forwarded_for,
        &X_FORWARDED_FOR,
        hop.forwarded_for(),
    );
    let own = &mut head.own;
    own.push((
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(hop.proto()),
    ));
    if let Some(host) = forwarded_host {
        own.push((X_FORWARDED_HOST.clone(), host));
    }
    own.push((X_REQUEST_ID.clone(), request_id.clone()));
    own.push((header::HOST, upstream_host.clone()));
    head
}

thread_local! {
    /// An emptied description ([`UpstreamHead::recycle`]) for the thread's next request: its box
    /// allocated, filled by a copy of ~0.9 kB and freed per request cost about 0.25k
    /// instructions (issue 22). Only ever empty fields: each is emptied when the box comes
    /// back and set again when it is taken.
    static SPARE: Cell<Option<Box<UpstreamHead>>> = const { Cell::new(None) };
}

/// A description of `caller` with `withheld` and none of the gateway's fields yet, in the
/// thread's spare box when there is one. Boxed: the description travels through the pipeline's
/// and the client's futures, and moving its ~0.9 kB by value at each step cost more than the
/// allocation (issue 22).
fn described(caller: HeaderMap, withheld: SmallVec<[HeaderName; 4]>) -> Box<UpstreamHead> {
    match SPARE.take() {
        Some(mut head) => {
            // Every field set: what the box held is gone whatever it was.
            head.caller = caller;
            head.withheld = withheld;
            head.own.clear();
            head
        }
        None => Box::new(UpstreamHead {
            caller,
            withheld,
            own: SmallVec::new(),
        }),
    }
}

/// Whether a caller header is withheld from the upstream for what it claims or carries: an
/// identity claim, one the route's `strip_headers` names, `Authorization` on a translated
/// request. (Hop-by-hop and forwarding headers are replaced per hop, not withheld.) Decision mode
/// names these to the front proxy.
pub fn withheld(name: &HeaderName, strip: &Strip<'_>) -> bool {
    if strip.authorization && name == header::AUTHORIZATION {
        return true;
    }
    let n = normalized(name);
    is_identity_name(&n) || strip.route.matches(&n)
}

/// Append to a comma-separated list header, folding the caller's repeated fields into the one
/// value the gateway sets. `present`: the caller sent `name` and it is not withheld (when not,
/// the element is the whole value, without a look-up).
fn fold_list(head: &mut UpstreamHead, present: bool, name: &HeaderName, item: HeaderValue) {
    if !present {
        head.own.push((name.clone(), item));
        return;
    }
    // Not a value (never: the parts are visible ASCII or a value already): the caller's fields
    // would go as they came, as before.
    if let Some(v) = folded(&head.caller, name, item) {
        head.withheld.push(name.clone());
        head.own.push((name.clone(), v));
    }
}

/// The caller's `name` values (trimmed, blank ones left out) and `item`, joined by `", "`.
fn folded(h: &HeaderMap, name: &HeaderName, item: HeaderValue) -> Option<HeaderValue> {
    let mut joined = Vec::new();
    for v in h.get_all(name) {
        if let Ok(s) = v.to_str() {
            if !s.trim().is_empty() {
                joined.extend_from_slice(s.trim().as_bytes());
                joined.extend_from_slice(b", ");
            }
        }
    }
    if joined.is_empty() {
        // The caller's fields are all blank: the element is the whole value.
        return Some(item);
    }
    joined.extend_from_slice(item.as_bytes());
    HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)).ok()
}

/// Prepare upstream response headers for the caller.
pub fn to_caller(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
}

#[cfg(test)]
mod tests;
