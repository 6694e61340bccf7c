//! The ops surface of migrations: bodies of the admin API (`/admin/v1/migration`,
//! `/admin/v1/inventory`, `/admin/v1/revocations`) and the tables the CLI prints from them. The
//! handlers are plain functions of already-resolved inputs so the admin listener only routes.

pub mod client;
pub mod migration;
pub mod suggest;
pub mod table;
