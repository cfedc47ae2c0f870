//! Authz API tests: the service in-process on a fresh database in a real Postgres, with
//! Auth's keys and Audit faked (see `support`).

mod cache;
mod checks;
mod grants;
mod internal;
mod outbox;
mod privileges;
mod roles;
mod support;
