//! Admin API bodies and CLI tables for the ops commands.
pub mod migration;
