//! Integration tests of the kernel against real peers.

mod otlp;
