//! Arbitrary bytes as an alarm transition: see `src/lib.rs` for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monasca_persister::decode::Decoder;

fuzz_target!(|data: &[u8]| {
    thread_local!(static DECODER: std::cell::RefCell<Decoder> = std::cell::RefCell::new(Decoder::default()));
    DECODER.with(|d| monasca_persister_fuzz::alarm(&mut d.borrow_mut(), data));
});
