//! Timestamps: packet time in nanoseconds since the Unix epoch, rendered as RFC 3339 UTC.

/// `1970-01-01T00:00:00.000000Z` style, microsecond precision (floor).
pub fn format_rfc3339_micros(ts_ns: i64) -> String {
    let mut v = Vec::with_capacity(27);
    write_rfc3339_micros(&mut v, ts_ns);
    String::from_utf8(v).unwrap_or_default()
}

pub(crate) fn write_rfc3339_micros(out: &mut Vec<u8>, ts_ns: i64) {
    let micros = ts_ns.div_euclid(1_000);
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    // Nanoseconds in an i64 span the years 1677 to 2262: always four digits, so the text
    // has a fixed width and is filled in place, then copied once.
    let two = |b: &mut [u8], v: u64| {
        b[0] = b'0' + (v / 10 % 10) as u8;
        b[1] = b'0' + (v % 10) as u8;
    };
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let y = y as u64;
    two(&mut b[0..2], y / 100);
    two(&mut b[2..4], y % 100);
    two(&mut b[5..7], m as u64);
    two(&mut b[8..10], d as u64);
    two(&mut b[11..13], sod / 3600);
    two(&mut b[14..16], sod / 60 % 60);
    two(&mut b[17..19], sod % 60);
    two(&mut b[20..22], frac / 10_000);
    two(&mut b[22..24], frac / 100 % 100);
    two(&mut b[24..26], frac % 100);
    out.extend_from_slice(&b);
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
