//! Validated types: the limit configuration, the question asked and the answer.

pub mod limits;
pub mod request;
pub mod verdict;
