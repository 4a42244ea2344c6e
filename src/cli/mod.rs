//! Operator commands. Each is a function over readers and writers so tests drive it directly;
//! `main.rs` only parses arguments and picks one.

pub mod convert;
#[cfg(feature = "daemon")]
pub mod discard;
#[cfg(feature = "daemon")]
pub mod loadgen;
#[cfg(feature = "daemon")]
pub mod mock_kafka;
#[cfg(feature = "daemon")]
pub mod produce;
