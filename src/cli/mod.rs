//! Operator commands. Each is a function over readers and writers so tests drive it directly;
//! `main.rs` only parses arguments and picks one.

#[cfg(feature = "daemon")]
pub mod acks;
pub mod convert;
#[cfg(feature = "daemon")]
pub mod dead_letters;
#[cfg(feature = "daemon")]
pub mod discard;
#[cfg(feature = "daemon")]
pub mod loadgen;
#[cfg(feature = "daemon")]
pub mod mock_kafka;
#[cfg(feature = "daemon")]
pub mod produce;
