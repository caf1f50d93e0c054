//! Arbitrary bytes as a body of each content type, a query string and a header value: the
//! classifier must never panic and must keep to its findings cap.
#![no_main]
use apiwatch_classify::{Classifier, Config, Location};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let c = Classifier::new(Config::default());
    let mut out = Vec::new();
    for ct in ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b", "text/xml", "text/plain", ""] {
        out.clear();
        c.scan_body(Location::ResponseBody, Some(ct), data, &mut out);
        assert!(out.len() <= 64);
    }
    out.clear();
    c.scan_form(Location::Query, data, &mut out);
    let text = String::from_utf8_lossy(data);
    c.scan_value(Location::RequestHeader, "x-key", "authorization", &text, &mut out);
});
