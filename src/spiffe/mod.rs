//! SPIFFE IDs, trust bundles, X.509-SVID and JWT-SVID validation (being written).
