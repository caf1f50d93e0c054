//! Arbitrary bytes as a pcap/pcapng file: the reader must yield packets or one error.
#![no_main]
use apiwatch::capture::file::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Reader::new(data) {
        let mut errors = 0;
        for p in r {
            if p.is_err() {
                errors += 1;
            }
        }
        assert!(errors <= 1, "the reader stops after its first error");
    }
});
