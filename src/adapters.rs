//! Declarative adapters for legacy directories and SaaS webhook providers (being written).
