//! Check digits and structural rules of the types that have them. Every function takes the
//! value already stripped of separators and never panics on any input.

/// Luhn (mod 10) over ASCII digits.
pub fn luhn(d: &[u8]) -> bool {
    if d.len() < 2 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut sum = 0u32;
    for (i, &c) in d.iter().rev().enumerate() {
        let mut v = (c - b'0') as u32;
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Payment card: 12 to 19 digits, Luhn, and a prefix of an issuer that issues that length
/// (12 digits: Maestro only).
pub fn card(d: &[u8]) -> bool {
    let n = d.len();
    if !(12..=19).contains(&n) || !luhn(d) {
        return false;
    }
    let p = |k: usize| -> u32 { d[..k].iter().fold(0, |a, &c| a * 10 + (c - b'0') as u32) };
    let (p1, p2, p3, p4, p6) = (p(1), p(2), p(3), p(4), p(6));
    let visa = p1 == 4 && matches!(n, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && n == 16;
    let amex = matches!(p2, 34 | 37) && n == 15;
    let discover = (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) || (622_126..=622_925).contains(&p6))
        && (16..=19).contains(&n);
    let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&n) || matches!(p4, 1800 | 2131) && n == 15;
    let diners = ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && (14..=19).contains(&n);
    let unionpay = p2 == 62 && (16..=19).contains(&n);
    // Maestro's ranges: 50 and 56 to 69.
    let maestro = (p2 == 50 || (56..=69).contains(&p2)) && (12..=19).contains(&n);
    if n == 12 {
        return maestro;
    }
    visa || mastercard || amex || discover || jcb || diners || unionpay || maestro
}

/// US Social Security number (9 digits): area not 000, 666 or 900-999; group not 00;
/// serial not 0000; and not the numbers famous for being published (078-05-1120, 219-09-9999).
pub fn ssn(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let area = &d[..3];
    let group = &d[3..5];
    let serial = &d[5..];
    if area == b"000" || area == b"666" || area[0] == b'9' || group == b"00" || serial == b"0000" {
        return false;
    }
    // All one digit, or the well-known advertising samples.
    if d.iter().all(|&c| c == d[0]) || d == b"078051120" || d == b"219099999" || d == b"123456789" {
        return false;
    }
    true
}

/// US ABA routing number: 9 digits, weights 3 7 1, first two digits in the Federal Reserve
/// ranges (00-12, 21-32, 61-72, 80).
pub fn aba(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) || d.iter().all(|&c| c == d[0]) {
        return false;
    }
    let v: Vec<u32> = d.iter().map(|&c| (c - b'0') as u32).collect();
    let pre = v[0] * 10 + v[1];
    if !(pre <= 12 || (21..=32).contains(&pre) || (61..=72).contains(&pre) || pre == 80) {
        return false;
    }
    let s = 3 * (v[0] + v[3] + v[6]) + 7 * (v[1] + v[4] + v[7]) + (v[2] + v[5] + v[8]);
    s.is_multiple_of(10)
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// IBAN: known country and its length, two check digits, mod 97 = 1.
pub fn iban(s: &[u8]) -> bool {
    if s.len() < 15 || s.len() > 34 || !s.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let cc = [s[0].to_ascii_uppercase(), s[1].to_ascii_uppercase()];
    let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| **c == cc) else { return false };
    if s.len() != len || !s[2].is_ascii_digit() || !s[3].is_ascii_digit() {
        return false;
    }
    let mut r: u32 = 0;
    for &c in s[4..].iter().chain(&s[..4]) {
        let c = c.to_ascii_uppercase();
        if c.is_ascii_digit() {
            r = (r * 10 + (c - b'0') as u32) % 97;
        } else {
            let v = (c - b'A') as u32 + 10;
            r = (r * 100 + v) % 97;
        }
    }
    r == 1
}

/// UK National Insurance number: two prefix letters (not D F I Q U V; second not O; not the
/// administrative prefixes BG GB KN NK NT TN ZZ), six digits, suffix A-D.
pub fn nino(s: &[u8]) -> bool {
    if s.len() != 9 {
        return false;
    }
    let (a, b) = (s[0].to_ascii_uppercase(), s[1].to_ascii_uppercase());
    let bad = b"DFIQUV";
    if !a.is_ascii_uppercase() || !b.is_ascii_uppercase() || bad.contains(&a) || bad.contains(&b) || b == b'O' {
        return false;
    }
    if [b"BG", b"GB", b"KN", b"NK", b"NT", b"TN", b"ZZ"].iter().any(|p| **p == [a, b]) {
        return false;
    }
    s[2..8].iter().all(u8::is_ascii_digit) && matches!(s[8].to_ascii_uppercase(), b'A'..=b'D')
}

/// Verhoeff check digit (Aadhaar, India): 12 digits, the first 2-9.
pub fn aadhaar(d: &[u8]) -> bool {
    const M: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 7, 8, 6, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    if d.len() != 12 || !d.iter().all(u8::is_ascii_digit) || d[0] < b'2' || d.iter().all(|&c| c == d[0]) {
        return false;
    }
    let mut c = 0u8;
    for (i, &x) in d.iter().rev().enumerate() {
        c = M[c as usize][P[i % 8][(x - b'0') as usize] as usize];
    }
    c == 0
}

/// Spanish DNI (8 digits and a letter) or NIE (X, Y or Z, 7 digits, a letter): mod 23 letter.
pub fn dni(s: &[u8]) -> bool {
    const LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    if s.len() != 9 {
        return false;
    }
    let lead = match s[0].to_ascii_uppercase() {
        b'X' => 0,
        b'Y' => 1,
        b'Z' => 2,
        c if c.is_ascii_digit() => (c - b'0') as u32,
        _ => return false,
    };
    if !s[1..8].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let n = s[1..8].iter().fold(lead, |a, &c| a * 10 + (c - b'0') as u32);
    LETTERS[(n % 23) as usize] == s[8].to_ascii_uppercase()
}

/// Dutch BSN: 9 digits, the "11 test" (weights 9..2 and -1).
pub fn bsn(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) || d.iter().all(|&c| c == b'0') {
        return false;
    }
    let mut s: i32 = 0;
    for (i, &c) in d[..8].iter().enumerate() {
        s += (9 - i as i32) * (c - b'0') as i32;
    }
    s -= (d[8] - b'0') as i32;
    s % 11 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits() {
        for c in ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117", "3530111333300000"] {
            assert!(card(c.as_bytes()), "{c}");
        }
        assert!(!card(b"4111111111111112"));
        assert!(!card(b"1234567812345670"), "Luhn-valid but no issuer");
        assert!(ssn(b"536901234") && !ssn(b"666123456") && !ssn(b"900123456") && !ssn(b"536001234"));
        assert!(aba(b"011000015") && aba(b"121000358") && !aba(b"011000016"));
        assert!(iban(b"GB82WEST12345698765432") && iban(b"DE89370400440532013000"));
        assert!(!iban(b"GB82WEST12345698765433") && !iban(b"DE8937040044053201300"));
        assert!(nino(b"AB123456C") && !nino(b"DA123456C") && !nino(b"AB123456E") && !nino(b"GB123456A"));
        assert!(aadhaar(b"234123412346") && !aadhaar(b"234123412345"));
        assert!(dni(b"12345678Z") && dni(b"X1234567L") && !dni(b"12345678A"));
        assert!(bsn(b"111222333") && !bsn(b"111222334"));
    }
}
