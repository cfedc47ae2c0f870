//! The rate limiter against a real Redis (`BULWARK_TEST_REDIS_URL`): the tower layer a
//! service puts in front of its own handlers, and the limiter's shared connections.
//! Each test has its own domain so runs do not collide.

mod connections;
mod layer;

use bulwark_kernel::testing::test_redis_url;

/// The test Redis's URL; a missing variable fails the test, saying how to set it.
fn redis_url() -> String {
    test_redis_url().unwrap_or_else(|e| panic!("{e}"))
}

/// A Redis URL nobody listens on: a port just bound and released.
fn closed_redis_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"))
        .port();
    drop(listener);
    format!("redis://127.0.0.1:{port}")
}

/// A domain of its own for one test.
fn unique_domain(test: &str) -> String {
    format!("test-{test}-{}", uuid::Uuid::new_v4().simple())
}
