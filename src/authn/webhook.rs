//! Signed SaaS webhooks (being written).
