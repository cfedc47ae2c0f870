//! Integration tests of the Auth service against a real Postgres (a fresh database
//! per test), with Identity, Authz and Audit faked in-process.

mod activation;
mod audit;
mod clients;
mod keys;
mod login;
mod logout;
mod refresh;
mod support;
