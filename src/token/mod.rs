//! The token issuer: signing keys, JWKS, minting and caching (being written).
