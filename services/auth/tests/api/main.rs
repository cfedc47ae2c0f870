//! Integration tests of the Auth service against a real Postgres (a fresh database
//! per test), with Identity, Authz and Audit faked in-process.

mod accounts;
mod activation;
mod audit;
mod clients;
mod keys;
mod keys_at_rest;
mod lockout;
mod login;
mod logout;
mod mail;
mod mfa;
mod privileges;
mod refresh;
mod sessions;
mod support;
