//! Integration tests of the rate-limit service against a real Redis
//! (`BULWARK_TEST_REDIS_URL`), each with its own domain so runs do not collide.

mod concurrency;
mod decisions;
mod edge_limits;
mod leases;
mod outage;
mod reload;
mod startup;
mod storage;
mod support;
