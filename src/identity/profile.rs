//! Which kind of token the gateway mints for an upstream. A route's upstream settings
//! (`proxy::settings`) name it and `token` mints it; it lives here so that neither needs the
//! other. What a profile means for signing (its `typ`, the algorithms it allows) is `token`'s.

/// Which kind of token a route's upstream receives (`upstream.token_profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    /// A JWT-SVID in all but issuer: `typ` `JWT`, ES256 only.
    #[default]
    JwtSvid,
    /// An RFC 9068 access token: `typ` `at+jwt`, adds `client_id`; ES256 or EdDSA.
    Rfc9068,
}

impl Profile {
    /// As written in config: `jwt-svid` or `rfc9068`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Profile::JwtSvid => "jwt-svid",
            Profile::Rfc9068 => "rfc9068",
        }
    }
}
