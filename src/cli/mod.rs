//! Operator commands. Each is a function over readers and writers so tests drive it directly;
//! `main.rs` only parses arguments and picks one.

pub mod convert;
pub mod discard;
pub mod loadgen;
pub mod produce;
