//! The token contract on its own: the agreement table's verdicts, and the behaviour the
//! table cannot show (key handling, claims exposed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod agreement;
