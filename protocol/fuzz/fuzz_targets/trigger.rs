//! Any Runtime API event or answer body: trigger recognition and answer reading never panic and
//! keep their bounds ([`checks::trigger`]).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    checks::trigger(data);
});
