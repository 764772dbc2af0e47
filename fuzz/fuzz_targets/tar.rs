//! Fuzz our tar reader against Go's archive/tar: the same listing, or both
//! refuse (see checks.rs). Needs OCCYSTRAP_TARLIST, the path of
//! tests/golang/tarlist.go built with `go build` (`make fuzz` does it).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::tar(data));
