//! Integration tests of the Identity service: in-process, over gRPC, against a real
//! Postgres (`BULWARK_TEST_PG_URL`), a fresh database per test.

mod accounts;
mod bootstrap;
mod credentials;
mod lookup;
mod privileges;
mod register;
mod support;
mod update;
