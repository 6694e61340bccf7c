//! The token settings a route carries (from `[routes.upstream]`).

/// Where the minted token goes (`upstream.token_header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenHeader {
    /// `Authorization: Bearer …`
    Authorization,
    /// The bare token in this header.
    Named(http::HeaderName),
    /// No token (the upstream gets an injected credential or nothing).
    None,
}
