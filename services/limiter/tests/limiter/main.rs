//! The rate limiter against a real Redis (`BULWARK_TEST_REDIS_URL`): the tower layer a
//! service puts in front of its own handlers, the limiter's shared connections,
//! leases shared by several edge instances, and account lockout.
//! Each test has its own domain so runs do not collide.

mod connections;
mod layer;
mod lease;
mod lockout;

use bulwark_kernel::testing::{closed_redis_url, test_redis_url, unique_domain};

/// The test Redis's URL; a missing variable fails the test, saying how to set it.
fn redis_url() -> String {
    test_redis_url().unwrap_or_else(|e| panic!("{e}"))
}
