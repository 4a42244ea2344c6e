//! Operator commands. Each is a function over readers and writers so tests drive it directly,
//! plus a `main` that takes its parsed arguments ([`args`]) and answers the exit status;
//! `main.rs` only parses the command line and picks one.

#[cfg(feature = "daemon")]
pub mod acks;
#[cfg(feature = "daemon")]
pub mod args;
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
