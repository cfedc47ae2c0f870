//! Audit API tests: the service in-process on a fresh database in a real Postgres, with
//! Auth's keys and Authz faked (see `support`), and a real Redis for its limits.

mod append;
mod chain;
mod checkpoints;
mod list;
mod privileges;
mod support;
mod verify_limit;
