//! `cargo xtask classify-quality [--docs N] [--presidio]`: precision and recall of the
//! sensitive-data classifier per type, on a labeled set of generated API payloads, and the
//! same set through Microsoft Presidio's pattern recognizers for comparison.
//!
//! The set: JSON documents shaped like API requests and responses (customers, payments,
//! payouts, logins, integrations, logs), each leaf labeled with the type planted in it or
//! with none. Planted values are valid for their type (check digits computed); the hard
//! negatives are values that look like them and are not: Luhn-valid order and tracking
//! numbers, invalid SSNs under an `ssn` key, card numbers failing Luhn, UUIDs, hashes,
//! timestamps, versions, SKUs, phone-like references, prices.
//!
//! A leaf counts as a true positive of type T if T was planted there and found there; a
//! false positive if T was found where it was not planted; a false negative if planted and
//! not found.

use crate::quality::Rng;
use anyhow::{bail, Context, Result};
use apiwatch_classify::{Classifier, Config, Location};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// One labeled leaf: its JSON path, its key, its value, and the planted type (or "").
pub struct Leaf {
    pub doc: usize,
    pub path: String,
    pub key: String,
    pub value: String,
    pub label: &'static str,
}

const FIRST: &[&str] =
    &["jane", "omar", "li", "maria", "kofi", "anna", "raj", "sofia", "ivan", "chen", "lucas", "emma"];
const LAST: &[&str] =
    &["doe", "haddad", "wei", "garcia", "mensah", "novak", "patel", "rossi", "petrov", "smith", "dubois"];
const DOMAINS: &[&str] = &["example.com", "mail.example.org", "corp.example.net", "example.co.uk", "shop.example.io"];

fn digits(r: &mut Rng, n: usize) -> String {
    (0..n).map(|_| (b'0' + r.below(10) as u8) as char).collect()
}

fn alnum(r: &mut Rng, set: &[u8], n: usize) -> String {
    (0..n).map(|_| set[r.below(set.len() as u64) as usize] as char).collect()
}

const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const B64: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
const HEX: &[u8] = b"0123456789abcdef";

/// The Luhn check digit that completes `body`.
fn luhn_digit(body: &str) -> char {
    let mut sum = 0;
    for (i, c) in body.bytes().rev().enumerate() {
        let mut v = (c - b'0') as u32;
        if i % 2 == 0 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    (b'0' + ((10 - sum % 10) % 10) as u8) as char
}

fn card(r: &mut Rng, valid: bool) -> String {
    let (prefix, len) =
        *r.pick(&[("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16), ("3528", 16)]);
    let body = format!("{prefix}{}", digits(r, len - 1 - prefix.len()));
    let mut d = luhn_digit(&body);
    if !valid {
        d = (b'0' + ((d as u8 - b'0' + 1 + r.below(8) as u8) % 10)) as char;
    }
    let n = format!("{body}{d}");
    match r.below(3) {
        0 => n,
        1 if len == 16 => format!("{} {} {} {}", &n[..4], &n[4..8], &n[8..12], &n[12..]),
        _ if len == 16 => format!("{}-{}-{}-{}", &n[..4], &n[4..8], &n[8..12], &n[12..]),
        _ => format!("{} {} {}", &n[..4], &n[4..10], &n[10..]),
    }
}

fn ssn(r: &mut Rng, valid: bool) -> String {
    let high = 900 + r.below(99);
    let area = if valid { 1 + r.below(665) } else { *r.pick(&[0, 666, high]) };
    let group = 1 + r.below(99);
    let serial = 1 + r.below(9999);
    if r.below(2) == 0 {
        format!("{area:03}-{group:02}-{serial:04}")
    } else {
        format!("{area:03}{group:02}{serial:04}")
    }
}

fn mod97(s: &str) -> u32 {
    s.bytes().fold(0u32, |acc, c| {
        if c.is_ascii_digit() {
            (acc * 10 + (c - b'0') as u32) % 97
        } else {
            (acc * 100 + (c - b'A') as u32 + 10) % 97
        }
    })
}

fn iban(r: &mut Rng) -> String {
    let (cc, bban) = match r.below(5) {
        0 => ("DE", digits(r, 18)),
        1 => ("GB", format!("{}{}", alnum(r, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4), digits(r, 14))),
        2 => ("FR", digits(r, 23)),
        3 => ("NL", format!("{}{}", alnum(r, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4), digits(r, 10))),
        _ => ("ES", digits(r, 20)),
    };
    let check = 98 - mod97(&format!("{bban}{cc}00"));
    let s = format!("{cc}{check:02}{bban}");
    if r.below(2) == 0 {
        s.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap_or("")).collect::<Vec<_>>().join(" ")
    } else {
        s
    }
}

fn aba(r: &mut Rng) -> String {
    let pre = *r.pick(&[1u64, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 21, 22, 25, 26, 31, 32, 61, 63, 67, 71, 72]);
    let d: Vec<u32> = format!("{pre:02}{}", digits(r, 6)).bytes().map(|c| (c - b'0') as u32).collect();
    let s = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5]);
    let check = (10 - s % 10) % 10;
    format!("{}{check}", d.iter().map(|v| v.to_string()).collect::<String>())
}

/// The Verhoeff check digit that completes `body`. Written apart from the classifier's
/// validator on purpose (the tables are the algorithm's): the set must not share a bug with
/// what it checks.
fn verhoeff_digit(body: &str) -> char {
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
    const INV: [u8; 10] = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9];
    let mut c = 0u8;
    for (i, x) in body.bytes().rev().enumerate() {
        c = M[c as usize][P[(i + 1) % 8][(x - b'0') as usize] as usize];
    }
    (b'0' + INV[c as usize]) as char
}

fn aadhaar(r: &mut Rng) -> String {
    let body = format!("{}{}", 2 + r.below(8), digits(r, 10));
    let n = format!("{body}{}", verhoeff_digit(&body));
    if r.below(2) == 0 {
        format!("{} {} {}", &n[..4], &n[4..8], &n[8..])
    } else {
        n
    }
}

fn dni(r: &mut Rng) -> String {
    const L: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";
    if r.below(3) == 0 {
        let lead = r.below(3);
        let d = digits(r, 7);
        let n: u64 = format!("{lead}{d}").parse().unwrap_or(0);
        format!("{}{d}{}", ["X", "Y", "Z"][lead as usize], L[(n % 23) as usize] as char)
    } else {
        let n = 10_000_000 + r.below(89_999_999);
        format!("{n}{}", L[(n % 23) as usize] as char)
    }
}

fn bsn(r: &mut Rng) -> String {
    loop {
        let d = format!("{}{}", 1 + r.below(9), digits(r, 8));
        let b = d.as_bytes();
        let s: i32 = (0..8).map(|i| (9 - i as i32) * (b[i] - b'0') as i32).sum::<i32>() - (b[8] - b'0') as i32;
        if s % 11 == 0 {
            return d;
        }
    }
}

fn nino(r: &mut Rng) -> String {
    let a = *r.pick(b"ACEHJLPRSWY");
    let b = *r.pick(b"ABCEHJLMPRSWY");
    let s = format!("{}{}{}{}", a as char, b as char, digits(r, 6), *r.pick(&['A', 'B', 'C', 'D']));
    if r.below(3) == 0 {
        format!("{} {} {} {} {}", &s[..2], &s[2..4], &s[4..6], &s[6..8], &s[8..])
    } else {
        s
    }
}

fn b64url(b: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..=c.len() {
            s.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
    }
    s
}

fn jwt(r: &mut Rng) -> String {
    let alg = *r.pick(&["HS256", "RS256", "ES256"]);
    let h = b64url(format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}").as_bytes());
    let p =
        b64url(format!("{{\"sub\":\"{}\",\"iat\":{}}}", digits(r, 8), 1_700_000_000 + r.below(10_000_000)).as_bytes());
    format!("{h}.{p}.{}", alnum(r, ALNUM, 43))
}

fn email(r: &mut Rng) -> String {
    let sep = *r.pick(&[".", "_", ""]);
    let n = r.below(3) as usize;
    format!("{}{sep}{}{}@{}", r.pick(FIRST), r.pick(LAST), digits(r, n), r.pick(DOMAINS))
}

fn phone(r: &mut Rng) -> String {
    match r.below(4) {
        0 => format!("+1{}{}", 200 + r.below(799), digits(r, 7)),
        1 => format!("+44 20 {} {}", digits(r, 4), digits(r, 4)),
        2 => format!("({}) {}-{}", 200 + r.below(799), digits(r, 3), digits(r, 4)),
        _ => format!("+49 30 {}", digits(r, 8)),
    }
}

fn ipv4(r: &mut Rng) -> String {
    format!("{}.{}.{}.{}", 11 + r.below(180), r.below(256), r.below(256), 1 + r.below(254))
}

fn ipv6(r: &mut Rng) -> String {
    format!("2001:db8:{}:{}::{}", alnum(r, HEX, 4), alnum(r, HEX, 3), alnum(r, HEX, 2))
}

/// A value of `label`, and the keys it is typically found under.
fn planted(r: &mut Rng, label: &str) -> (String, &'static [&'static str]) {
    match label {
        "credit_card" => (card(r, true), &["card_number", "pan", "number", "cc_number"]),
        "us_ssn" => (ssn(r, true), &["ssn", "social_security_number", "taxpayer_id"]),
        "iban" => (iban(r), &["iban", "bank_account", "account"]),
        "us_aba_routing" => (aba(r), &["routing_number", "aba", "routing"]),
        "email" => (email(r), &["email", "contact", "billing_email", "user"]),
        "phone" => (phone(r), &["phone", "mobile", "phone_number", "tel"]),
        "ip_address" => {
            (if r.below(3) == 0 { ipv6(r) } else { ipv4(r) }, &["ip", "client_ip", "remote_addr", "source"])
        }
        "date_of_birth" => (
            format!("{}-{:02}-{:02}", 1940 + r.below(65), 1 + r.below(12), 1 + r.below(28)),
            &["dob", "date_of_birth", "birthDate", "birthday"],
        ),
        "passport" => (
            if r.below(2) == 0 {
                digits(r, 9)
            } else {
                format!("{}{}", alnum(r, b"ABCDEFGHJKLMNPRSTUVWXYZ", 1), digits(r, 8))
            },
            &["passport_number", "passport", "passportNo"],
        ),
        "uk_nino" => (nino(r), &["nino", "national_insurance_number", "ni_number"]),
        "in_aadhaar" => (aadhaar(r), &["aadhaar", "aadhaar_number", "aadhaarNo"]),
        "es_dni" => (dni(r), &["dni", "nif", "nie"]),
        "nl_bsn" => (bsn(r), &["bsn", "burgerservicenummer"]),
        "jwt" => (jwt(r), &["id_token", "access_token", "jwt", "token"]),
        "aws_access_key_id" => {
            (format!("AKIA{}", alnum(r, UPPER_DIGITS, 16)), &["aws_access_key_id", "access_key", "key_id"])
        }
        "aws_secret_key" => (alnum(r, B64, 40), &["aws_secret_access_key", "secret_key"]),
        "github_token" => (format!("ghp_{}", alnum(r, ALNUM, 36)), &["github_token", "token", "pat"]),
        "gitlab_token" => (format!("glpat-{}", alnum(r, ALNUM, 20)), &["gitlab_token", "token"]),
        "slack_token" => {
            (format!("xoxb-{}-{}-{}", digits(r, 12), digits(r, 13), alnum(r, ALNUM, 24)), &["slack_token", "bot_token"])
        }
        "stripe_key" => (format!("sk_live_{}", alnum(r, ALNUM, 24)), &["stripe_key", "secret", "api_key"]),
        "google_api_key" => (format!("AIza{}", alnum(r, ALNUM, 35)), &["google_api_key", "maps_key", "key"]),
        "azure_storage_key" => (
            format!(
                "DefaultEndpointsProtocol=https;AccountName={};AccountKey={}==;EndpointSuffix=core.windows.net",
                r.pick(LAST),
                alnum(r, B64, 86)
            ),
            &["connection_string", "storage"],
        ),
        "private_key" => (
            format!(
                "-----BEGIN {}PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
                r.pick(&["", "RSA ", "EC "]),
                alnum(r, B64, 64)
            ),
            &["private_key", "pem", "key_material"],
        ),
        "password" => {
            (format!("{}{}!{}", r.pick(LAST), digits(r, 3), r.pick(FIRST)), &["password", "passwd", "new_password"])
        }
        _ => (format!("{}{}", alnum(r, ALNUM, 24), digits(r, 4)), &["client_secret", "api_secret", "secret"]),
    }
}

/// A hard negative: (key, value) that looks like a type and is none.
fn negative(r: &mut Rng) -> (String, String) {
    let luhn_number = |r: &mut Rng| {
        let body = format!("4{}", digits(r, 14));
        format!("{body}{}", luhn_digit(&body))
    };
    match r.below(22) {
        0 => ("order_id".into(), luhn_number(r)),
        1 => ("tracking_number".into(), luhn_number(r)),
        2 => ("card_number".into(), card(r, false)),
        3 => ("ssn".into(), ssn(r, false)),
        4 => (
            "id".into(),
            format!(
                "{}-{}-4{}-a{}-{}",
                alnum(r, HEX, 8),
                alnum(r, HEX, 4),
                alnum(r, HEX, 3),
                alnum(r, HEX, 3),
                alnum(r, HEX, 12)
            ),
        ),
        5 => ("sha256".into(), alnum(r, HEX, 64)),
        6 => ("created_at".into(), (1_600_000_000_000 + r.below(100_000_000_000)).to_string()),
        7 => ("version".into(), format!("{}.{}.{}.{}", r.below(20), r.below(20), r.below(300), r.below(9999))),
        8 => {
            ("sku".into(), format!("{}{}{}-X", alnum(r, b"ABCDEFGHJKLMNPRSTWY", 2), digits(r, 6), alnum(r, b"ABCD", 1)))
        }
        9 => ("customer_ref".into(), digits(r, 10)),
        10 => ("amount".into(), format!("{}.{:02}", r.below(100_000), r.below(100))),
        11 => ("invoice".into(), format!("INV-{}-{}", digits(r, 4), digits(r, 6))),
        12 => (
            "updated".into(),
            format!("2026-{:02}-{:02}T{:02}:{:02}:00Z", 1 + r.below(12), 1 + r.below(28), r.below(24), r.below(60)),
        ),
        13 => ("build".into(), format!("10.0.{}.{}", r.below(30000), r.below(9999))),
        14 => ("commit".into(), alnum(r, HEX, 40)),
        15 => ("nonce".into(), alnum(r, ALNUM, 32)),
        16 => ("quantity".into(), r.below(1000).to_string()),
        17 => ("zip".into(), digits(r, 5)),
        18 => ("isbn".into(), format!("978{}", digits(r, 10))),
        19 => ("name".into(), format!("{} {}", r.pick(FIRST), r.pick(LAST))),
        20 => (
            "description".into(),
            format!("Order {} shipped in {} boxes, ref {}", digits(r, 8), r.below(9), alnum(r, ALNUM, 10)),
        ),
        _ => ("request_id".into(), format!("req_{}", alnum(r, ALNUM, 20))),
    }
}

pub const LABELS: &[&str] = &[
    "credit_card",
    "us_ssn",
    "iban",
    "us_aba_routing",
    "email",
    "phone",
    "ip_address",
    "date_of_birth",
    "passport",
    "uk_nino",
    "in_aadhaar",
    "es_dni",
    "nl_bsn",
    "jwt",
    "aws_access_key_id",
    "aws_secret_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "stripe_key",
    "google_api_key",
    "azure_storage_key",
    "private_key",
    "password",
    "secret",
];

/// Types recognisable by their shape alone, which the set also plants in free text.
const EMBEDDABLE: &[&str] = &[
    "credit_card",
    "us_ssn",
    "iban",
    "email",
    "phone",
    "ip_address",
    "uk_nino",
    "jwt",
    "aws_access_key_id",
    "github_token",
    "gitlab_token",
    "slack_token",
    "stripe_key",
    "google_api_key",
    "azure_storage_key",
    "private_key",
];

/// Types with a validator (check digits or a decodable structure): the stricter target.
const VALIDATED: &[&str] = &[
    "credit_card",
    "us_ssn",
    "iban",
    "us_aba_routing",
    "uk_nino",
    "in_aadhaar",
    "es_dni",
    "nl_bsn",
    "jwt",
    "ip_address",
];

/// `docs` JSON documents and their labeled leaves: half planted values, half hard
/// negatives (the quality set).
pub fn generate(docs: usize, seed: u64) -> (Vec<String>, Vec<Leaf>) {
    generate_mix(docs, seed, 50, 50)
}

/// An ordinary field of an API payload, as JSON text: names, prose, flags, amounts, times,
/// enums, tags.
fn benign(r: &mut Rng) -> (String, String) {
    const WORDS: &[&str] = &[
        "the",
        "order",
        "was",
        "shipped",
        "to",
        "our",
        "new",
        "warehouse",
        "please",
        "review",
        "updated",
        "terms",
        "and",
        "thanks",
        "for",
        "your",
        "patience",
        "delivery",
        "window",
    ];
    match r.below(9) {
        0 => ("title".into(), format!("\"{} {}\"", r.pick(FIRST), r.pick(LAST))),
        1 => {
            let n = 6 + r.below(20) as usize;
            let text: Vec<&str> = (0..n).map(|_| *r.pick(WORDS)).collect();
            ("description".into(), format!("\"{}\"", text.join(" ")))
        }
        2 => ("active".into(), if r.below(2) == 0 { "true".into() } else { "false".into() }),
        3 => ("price".into(), format!("{}.{:02}", r.below(1000), r.below(100))),
        4 => (
            "created".into(),
            format!(
                "\"2026-{:02}-{:02}T{:02}:{:02}:{:02}Z\"",
                1 + r.below(12),
                1 + r.below(28),
                r.below(24),
                r.below(60),
                r.below(60)
            ),
        ),
        5 => ("status".into(), format!("\"{}\"", r.pick(&["active", "pending", "closed", "archived"]))),
        6 => ("tags".into(), format!("[\"{}\",\"{}\"]", r.pick(WORDS), r.pick(WORDS))),
        7 => ("quantity".into(), r.below(100).to_string()),
        _ => (
            "address".into(),
            format!(
                "{{\"street\":\"{} {} Street\",\"city\":\"Springfield\",\"country\":\"US\"}}",
                1 + r.below(999),
                r.pick(LAST)
            ),
        ),
    }
}

/// Documents where `planted_pct` percent of the fields carry a sensitive value and
/// `negative_pct` percent a hard negative; the rest are ordinary (not labeled leaves).
pub fn generate_mix(docs: usize, seed: u64, planted_pct: u64, negative_pct: u64) -> (Vec<String>, Vec<Leaf>) {
    let mut r = Rng::new(seed);
    let mut out = Vec::new();
    let mut leaves = Vec::new();
    let objects = ["customer", "payment", "payout", "account", "profile", "integration", "event", "order"];
    for d in 0..docs {
        let top = objects[r.below(objects.len() as u64) as usize];
        let mut fields: Vec<String> = Vec::new();
        let n = 4 + r.below(8) as usize;
        for _ in 0..n {
            let roll = r.below(100);
            if roll >= planted_pct + negative_pct {
                let (k, json) = benign(&mut r);
                let mut key = k.clone();
                let mut i = 2;
                while fields.iter().any(|f| f.starts_with(&format!("\"{key}\":"))) {
                    key = format!("{k}{i}");
                    i += 1;
                }
                fields.push(format!("\"{key}\":{json}"));
                continue;
            }
            let (key, value, label) = if roll < planted_pct {
                let label = LABELS[r.below(LABELS.len() as u64) as usize];
                let (mut v, keys) = planted(&mut r, label);
                if EMBEDDABLE.contains(&label) && r.below(5) == 0 {
                    // One in five of the types that stand on their own shape goes into free
                    // text under a name that says nothing (SSNs with dashes, phones in E.164).
                    while label == "us_ssn" && !v.contains('-') || label == "phone" && !v.starts_with('+') {
                        v = planted(&mut r, label).0;
                    }
                    let who = format!("{} {}", r.pick(FIRST), r.pick(LAST));
                    let text = match r.below(3) {
                        0 => format!("Customer {who} asked to update {v} before Friday."),
                        1 => format!("retrying request with {v} (attempt {})", 1 + r.below(5)),
                        _ => v.to_string(),
                    };
                    (r.pick(&["note", "message", "comment", "value", "data"]).to_string(), text, label)
                } else {
                    (keys[r.below(keys.len() as u64) as usize].to_string(), v, label)
                }
            } else {
                let (k, v) = negative(&mut r);
                (k, v, "")
            };
            // Keys are unique within the object: suffix repeats.
            let mut k = key.clone();
            let mut i = 2;
            while fields.iter().any(|f| f.starts_with(&format!("\"{k}\":"))) {
                k = format!("{key}{i}");
                i += 1;
            }
            let path = format!("$.{top}.{k}");
            fields.push(format!("\"{k}\":{}", serde_json::Value::String(value.clone())));
            leaves.push(Leaf { doc: d, path, key: k, value, label });
        }
        out.push(format!(
            "{{\"{top}\":{{{}}},\"meta\":{{\"page\":{},\"status\":\"ok\"}}}}",
            fields.join(","),
            r.below(50)
        ));
    }
    (out, leaves)
}

#[derive(Default, Clone, Copy)]
struct Score {
    tp: u64,
    fp: u64,
    fn_: u64,
}

impl Score {
    fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
}

/// Score predictions: for each leaf (by index), the set of type names found there.
fn score(leaves: &[Leaf], found: &[Vec<String>]) -> BTreeMap<&'static str, Score> {
    let mut s: BTreeMap<&'static str, Score> = LABELS.iter().map(|l| (*l, Score::default())).collect();
    for (leaf, f) in leaves.iter().zip(found) {
        for l in LABELS {
            let planted = leaf.label == *l;
            let hit = f.iter().any(|x| x == l);
            let e = s.get_mut(l).expect("every label");
            match (planted, hit) {
                (true, true) => e.tp += 1,
                (false, true) => e.fp += 1,
                (true, false) => e.fn_ += 1,
                _ => {}
            }
        }
    }
    s
}

/// The classifier on each document; findings mapped back to leaves by path.
fn ours(docs: &[String], leaves: &[Leaf]) -> Vec<Vec<String>> {
    let c = Classifier::new(Config::default());
    let mut found: Vec<Vec<String>> = vec![Vec::new(); leaves.len()];
    let mut index: BTreeMap<(usize, &str), usize> = BTreeMap::new();
    for (i, l) in leaves.iter().enumerate() {
        index.insert((l.doc, l.path.as_str()), i);
    }
    let mut out = Vec::new();
    for (di, d) in docs.iter().enumerate() {
        out.clear();
        c.scan_json(Location::ResponseBody, d.as_bytes(), &mut out);
        for f in &out {
            if let Some(&i) = index.get(&(di, f.field.as_str())) {
                found[i].push(f.ty.name().to_string());
            }
        }
    }
    found
}

/// Presidio's pattern recognizers (no NLP model: none can be downloaded here) on each leaf
/// as `key: value`, through `xtask/assets/presidio_eval.py` in the given Python.
pub fn presidio(python: &Path, root: &Path, leaves: &[Leaf], tmp: &Path) -> Result<(Vec<BTreeMap<String, f64>>, f64)> {
    let input = tmp.join("leaves.jsonl");
    let mut text = String::new();
    for l in leaves {
        text.push_str(&serde_json::json!({"key": l.key, "value": l.value}).to_string());
        text.push('\n');
    }
    std::fs::write(&input, text)?;
    let out = Command::new(python).arg(root.join("xtask/assets/presidio_eval.py")).arg(&input).output()?;
    if !out.status.success() {
        bail!("presidio_eval.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut lines = std::str::from_utf8(&out.stdout)?.lines();
    let secs: f64 = lines.next().context("no timing line")?.trim().parse()?;
    let found = lines.map(|l| serde_json::from_str::<BTreeMap<String, f64>>(l).unwrap_or_default()).collect::<Vec<_>>();
    if found.len() != leaves.len() {
        bail!("presidio_eval.py answered {} lines for {} leaves", found.len(), leaves.len());
    }
    Ok((found, secs))
}

/// Score the classifier on a labeled set of `docs` documents; with a Python that has
/// presidio-analyzer, Presidio's pattern recognizers too. Fails below the targets.
pub fn run(root: &Path, docs: usize, presidio_python: Option<&Path>) -> Result<()> {
    let (set, leaves) = generate(docs, 20_261_123);
    let bytes: usize = set.iter().map(String::len).sum();
    let planted = leaves.iter().filter(|l| !l.label.is_empty()).count();
    println!(
        "labeled set: {} documents ({:.1} MB), {} values: {} planted, {} hard negatives",
        set.len(),
        bytes as f64 / 1e6,
        leaves.len(),
        planted,
        leaves.len() - planted
    );
    let found = ours(&set, &leaves);
    if std::env::var_os("SHOW_ERRORS").is_some() {
        for (l, f) in leaves.iter().zip(&found) {
            let wrong = f.iter().any(|t| t != l.label) || !l.label.is_empty() && !f.iter().any(|t| t == l.label);
            if wrong {
                println!("  {} = {:?}: planted {:?}, found {:?}", l.key, l.value, l.label, f);
            }
        }
    }
    let s_ours = score(&leaves, &found);
    let tmp = tempfile::tempdir()?;
    // Presidio at its default threshold (0) and at 0.5.
    let theirs = match presidio_python {
        Some(py) => {
            let (f, _) = presidio(py, root, &leaves, tmp.path())?;
            let at = |t: f64| -> Vec<Vec<String>> {
                f.iter().map(|m| m.iter().filter(|(_, s)| **s >= t).map(|(k, _)| k.clone()).collect()).collect()
            };
            Some((score(&leaves, &at(0.0)), score(&leaves, &at(0.5))))
        }
        None => None,
    };
    println!(
        "{:<18} {:>7} | {:>9} {:>6} | {:>15} {:>6} | {:>15} {:>6}",
        "type", "planted", "apiwatch P", "R", "Presidio (>=0) P", "R", "Presidio (>=0.5) P", "R"
    );
    let mut failed = Vec::new();
    for l in LABELS {
        let o = s_ours[l];
        let cell = |s: Option<Score>| match s {
            Some(p) if presidio_covers(l) => (format!("{:.3}", p.precision()), format!("{:.3}", p.recall())),
            Some(_) => ("n/a".into(), "n/a".into()),
            None => ("-".into(), "-".into()),
        };
        let (p0, r0) = cell(theirs.as_ref().map(|t| t.0[l]));
        let (p5, r5) = cell(theirs.as_ref().map(|t| t.1[l]));
        println!(
            "{:<18} {:>7} | {:>10.3} {:>6.3} | {:>16} {:>6} | {:>18} {:>6}",
            l,
            o.tp + o.fn_,
            o.precision(),
            o.recall(),
            p0,
            r0,
            p5,
            r5
        );
        let (pmin, rmin) = if VALIDATED.contains(l) { (0.98, 0.95) } else { (0.95, 0.0) };
        if o.precision() < pmin || o.recall() < rmin {
            failed.push(format!("{l} (precision {:.3}, recall {:.3})", o.precision(), o.recall()));
        }
    }
    if !failed.is_empty() {
        bail!(
            "below target (validated types: precision 0.98, recall 0.95; others: precision 0.95): {}",
            failed.join(", ")
        );
    }
    Ok(())
}

/// A Python with Faker (PyPI): a virtualenv in `dir`, made the first time.
pub fn faker_python(dir: &Path) -> Result<std::path::PathBuf> {
    crate::python_with(dir, "faker", "faker")
}

/// The classifier on values made by Faker (another library's formats, per locale), put in
/// JSON documents under the names they come with, or inside sentences under neutral names;
/// precision and recall per type. A second opinion on the labeled set, whose values come
/// from the same hands as the rules. Fails below the targets.
pub fn faker(root: &Path, python: &Path, per_kind: usize, presidio_python: Option<&Path>) -> Result<()> {
    let out = Command::new(python)
        .arg(root.join("xtask/assets/faker_values.py"))
        .args([per_kind.to_string(), "20261205".into()])
        .output()?;
    if !out.status.success() {
        bail!("faker_values.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut docs = Vec::new();
    let mut leaves = Vec::new();
    let mut members = Vec::new();
    for (i, line) in std::str::from_utf8(&out.stdout)?.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let (label, key, value) = (text("label"), text("key"), text("value"));
        let label: &'static str = match LABELS.iter().find(|l| **l == label) {
            Some(l) => l,
            None if label.is_empty() => "",
            None => bail!("faker_values.py: unknown label {label:?}"),
        };
        let embed = v["embed"].as_bool().unwrap_or(false);
        let value = if embed { format!("Customer wrote: please use {value} for the refund, thanks.") } else { value };
        let slot = format!("r{}", members.len());
        // Digit strings are sometimes JSON numbers, as APIs send them.
        let number = value.len() <= 18 && !value.starts_with('0') && value.bytes().all(|c| c.is_ascii_digit());
        let json =
            if i % 3 == 0 && number { value.clone() } else { serde_json::Value::String(value.clone()).to_string() };
        members.push(format!("{:?}:{{{}:{json}}}", slot, serde_json::Value::String(key.clone())));
        // Faker's keys are plain identifiers: the classifier writes them `.key`.
        leaves.push(Leaf { doc: docs.len(), path: format!("$.{slot}.{key}"), key, value, label });
        if members.len() == 8 {
            docs.push(format!("{{{}}}", members.join(",")));
            members.clear();
        }
    }
    if !members.is_empty() {
        docs.push(format!("{{{}}}", members.join(",")));
    }
    let found = ours(&docs, &leaves);
    if std::env::var_os("SHOW_ERRORS").is_some() {
        for (l, f) in leaves.iter().zip(&found) {
            if f.iter().any(|t| t != l.label) || !l.label.is_empty() && !f.iter().any(|t| t == l.label) {
                println!("  {} = {:?}: planted {:?}, found {:?}", l.key, l.value, l.label, f);
            }
        }
    }
    let s = score(&leaves, &found);
    let planted = leaves.iter().filter(|l| !l.label.is_empty()).count();
    println!(
        "\nFaker values ({} per kind, 9 locales): {} documents, {} values: {} planted, {} look-alikes",
        per_kind,
        docs.len(),
        leaves.len(),
        planted,
        leaves.len() - planted
    );
    // Presidio's pattern recognizers on the same values, at its default threshold.
    let theirs = match presidio_python {
        Some(py) => {
            let tmp = tempfile::tempdir()?;
            let (f, _) = presidio(py, root, &leaves, tmp.path())?;
            let found: Vec<Vec<String>> = f.iter().map(|m| m.keys().cloned().collect()).collect();
            Some(score(&leaves, &found))
        }
        None => None,
    };
    println!("{:<18} {:>7} {:>10} {:>6} | {:>10} {:>6}", "type", "planted", "apiwatch P", "R", "Presidio P", "R");
    let mut failed = Vec::new();
    for l in LABELS {
        let o = s[l];
        if o.tp + o.fn_ + o.fp == 0 {
            continue;
        }
        let (pp, pr) = match theirs.as_ref().map(|t| t[l]) {
            Some(p) if presidio_covers(l) => (format!("{:.3}", p.precision()), format!("{:.3}", p.recall())),
            Some(_) => ("n/a".into(), "n/a".into()),
            None => ("-".into(), "-".into()),
        };
        println!("{:<18} {:>7} {:>10.3} {:>6.3} | {:>10} {:>6}", l, o.tp + o.fn_, o.precision(), o.recall(), pp, pr);
        let (pmin, rmin) = if VALIDATED.contains(l) { (0.98, 0.95) } else { (0.95, 0.0) };
        if o.precision() < pmin || o.recall() < rmin {
            failed.push(format!("{l} (precision {:.3}, recall {:.3})", o.precision(), o.recall()));
        }
    }
    if !failed.is_empty() {
        bail!("Faker values below target: {}", failed.join(", "));
    }
    Ok(())
}

/// Scan speed on JSON bodies of realistic sizes (one core; median of 5), and Presidio's
/// pattern recognizers on the values of the same bodies.
pub fn speed(root: &Path, presidio_python: Option<&Path>) -> Result<()> {
    let c = Classifier::new(Config::default());
    println!("\nsensitive-data scan speed, one core (median of 15): JSON bodies of generated API payloads (5% of fields sensitive, 10% look-alikes), then real response examples");
    for (label, per_body) in [("~1 KB bodies", 3usize), ("~8 KB bodies", 24), ("~64 KB bodies", 190)] {
        // Ordinary payloads: one field in twenty sensitive, one in ten a look-alike.
        let (docs, _) = generate_mix(6000, 7, 5, 10);
        // Bodies: arrays of documents, as list endpoints return them.
        let bodies: Vec<String> = docs.chunks(per_body).map(|c| format!("{{\"items\":[{}]}}", c.join(","))).collect();
        scan_speed(&c, label, &bodies);
    }
    // Real response bodies: the examples GitHub publishes in its API description (URLs,
    // timestamps, ids, node ids, some keys and emails; thousands of distinct names).
    let gh = root.join("../shared/openapi/github/api.github.com.json");
    match github_examples(&gh) {
        Ok(bodies) => scan_speed(&c, "GitHub examples", &bodies),
        Err(e) => println!("  GitHub response examples not measured: {e:#}"),
    }
    // The labeled set (half its values sensitive): against Presidio on the same values.
    let (docs, leaves) = generate(1000, 7);
    let bytes: usize = docs.iter().map(String::len).sum();
    let t0 = Instant::now();
    let mut out = Vec::new();
    for _ in 0..5 {
        for d in &docs {
            out.clear();
            c.scan_json(Location::ResponseBody, d.as_bytes(), &mut out);
        }
    }
    let ours = bytes as f64 * 5.0 / 1e6 / t0.elapsed().as_secs_f64();
    match presidio_python {
        Some(py) => {
            let tmp = tempfile::tempdir()?;
            let (_, secs) = presidio(py, root, &leaves, tmp.path())?;
            let theirs = bytes as f64 / 1e6 / secs;
            println!(
                "  same {} documents ({:.2} MB): apiwatch {ours:.0} MB/s, Presidio pattern recognizers {theirs:.3} MB/s: {:.0}x",
                docs.len(),
                bytes as f64 / 1e6,
                ours / theirs
            );
        }
        None => println!("  Presidio not measured (no Python with presidio-analyzer)"),
    }
    Ok(())
}

/// Scan `bodies` 15 times, each time also parsing them with serde_json into a `Value` (a
/// peer measured in the same moments, so that the ratio holds on a noisy machine); print
/// the median rates.
fn scan_speed(c: &Classifier, label: &str, bodies: &[String]) {
    let bytes: usize = bodies.iter().map(String::len).sum();
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    for _ in 0..15 {
        let t0 = Instant::now();
        for b in bodies {
            out.clear();
            c.scan_json(Location::ResponseBody, b.as_bytes(), &mut out);
        }
        ours.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        for b in bodies {
            std::hint::black_box(serde_json::from_slice::<serde_json::Value>(b.as_bytes()).ok());
        }
        peer.push(t0.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, p) = (bytes as f64 / 1e6 / median(&mut ours), bytes as f64 / 1e6 / median(&mut peer));
    println!(
        "  {label:<16} {:>4} bodies, {:>5.1} MB: {a:>5.0} MB/s (serde_json parse to Value alone: {p:>5.0} MB/s, {:.2}x)",
        bodies.len(),
        bytes as f64 / 1e6,
        a / p
    );
}

/// The response examples of an OpenAPI document (`components.examples`), as compact JSON.
fn github_examples(path: &Path) -> Result<Vec<String>> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).with_context(|| format!("{}", path.display()))?)?;
    let examples = doc.pointer("/components/examples").and_then(|e| e.as_object()).context("no components.examples")?;
    Ok(examples
        .values()
        .filter_map(|e| e.get("value"))
        .filter(|v| v.is_object() || v.is_array())
        .map(|v| v.to_string())
        .collect())
}

/// The types Presidio's predefined pattern recognizers cover (by our names).
fn presidio_covers(label: &str) -> bool {
    matches!(
        label,
        "credit_card"
            | "us_ssn"
            | "iban"
            | "us_aba_routing"
            | "email"
            | "phone"
            | "ip_address"
            | "passport"
            | "uk_nino"
            | "in_aadhaar"
            | "es_dni"
    )
}

/// A Python with presidio-analyzer: a virtualenv in `dir`, made (from PyPI) the first time.
pub fn presidio_python(dir: &Path) -> Option<std::path::PathBuf> {
    crate::python_with(dir, "presidio_analyzer", "presidio-analyzer")
        .map_err(|e| println!("  presidio-analyzer could not be installed ({e:#}): Presidio is left out"))
        .ok()
}
