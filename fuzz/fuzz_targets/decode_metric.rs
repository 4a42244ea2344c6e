//! Arbitrary bytes as a metric message: see `src/lib.rs` for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monasca_persister::decode::Decoder;

fuzz_target!(|data: &[u8]| {
    // A fresh decoder each time would hide bugs in buffer reuse; keep one per process.
    thread_local!(static DECODER: std::cell::RefCell<Decoder> = std::cell::RefCell::new(Decoder::default()));
    DECODER.with(|d| monasca_persister_fuzz::metric(&mut d.borrow_mut(), data));
});
