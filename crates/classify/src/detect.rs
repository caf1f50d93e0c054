//! Detection in one value (a JSON string, a parameter, a header, a run of text), given the
//! name it was found under.
//!
//! One pass finds candidates whatever the number of types: an Aho-Corasick automaton over
//! the literal anchors of the prefixed formats (`AKIA`, `ghp_`, `eyJ`, `@`, `-----BEGIN`,
//! ...), then one walk over the value's tokens (digit runs with separators, alphanumeric
//! words). Each candidate is checked by its validator, and the name it sits under
//! (`card_number`, `dob`, `version`) raises, lowers or vetoes the confidence.

use crate::mask;
use crate::types::{DataType, Finding, Location};
use crate::validate;
use aho_corasick::{AhoCorasick, MatchKind};

/// What the field name says: a set of the K_ flags below (small, so that the per-thread
/// cache of names and the path segments that carry it stay small).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Context(u32);

macro_rules! says {
    ($($name:ident = $flag:ident),* $(,)?) => {
        impl Context {
            $(
                #[inline]
                pub(crate) fn $name(self) -> bool {
                    self.0 & $flag != 0
                }
            )*
        }
    };
}

says! {
    card = K_CARD,
    ssn = K_SSN,
    routing = K_ROUTING,
    phone = K_PHONE,
    dob = K_DOB,
    passport = K_PASSPORT,
    nino = K_NINO,
    aadhaar = K_AADHAAR,
    dni = K_DNI,
    bsn = K_BSN,
    iban = K_IBAN,
    password = K_PASSWORD,
    secret = K_SECRET,
    aws_secret = K_AWS_SECRET,
    session = K_SESSION,
    // Names of things that are numbers but not personal data: ids, orders, tracking,
    // times, versions.
    not_personal = K_NOT_PERSONAL,
    version = K_VERSION,
}

impl Context {
    /// Read a field name. Called for every scanned value, so it is one pass of an
    /// automaton over the name, lower-cased with its words spaced (`cardNumber`,
    /// `card_number`, `card-number` all read `card number`).
    pub(crate) fn of(name: &str) -> Context {
        let mut buf = [0u8; 64];
        let mut len = 0;
        let mut prev: u8 = b' ';
        for &c in name.as_bytes() {
            if len + 2 > buf.len() {
                break;
            }
            if c.is_ascii_alphanumeric() {
                // A new word at a hump (`cardNumber`) or where digits start (`phone2`).
                let hump = c.is_ascii_uppercase() && (prev.is_ascii_lowercase() || prev.is_ascii_digit());
                let digits = c.is_ascii_digit() && prev.is_ascii_alphabetic();
                if (hump || digits) && len > 0 && buf[len - 1] != b' ' {
                    buf[len] = b' ';
                    len += 1;
                }
                buf[len] = c.to_ascii_lowercase();
                len += 1;
            } else if len > 0 && buf[len - 1] != b' ' {
                buf[len] = b' ';
                len += 1;
            }
            prev = c;
        }
        while len > 0 && buf[len - 1] == b' ' {
            len -= 1;
        }
        let n = &buf[..len];
        let (ac, kws) = keywords();
        let mut f = 0u32;
        for m in ac.find_overlapping_iter(n) {
            let (flag, short) = kws[m.pattern().as_usize()];
            let (s, e) = (m.start(), m.end());
            // Short keywords (`pan`, `aba`, `rtn`, `dob`) only as words of their own, plural
            // allowed (`passportNo` has no `rtn`); long ones anywhere (`billingPassword`).
            let word = (s == 0 || n[s - 1] == b' ')
                && (e == n.len() || n[e] == b' ' || n[e] == b's' && (e + 1 == n.len() || n[e + 1] == b' '));
            if !short || word {
                f |= flag;
            }
        }
        let is = |w: &[u8]| n == w;
        let last_word = n.rsplit(|&c| c == b' ').next().unwrap_or(b"");
        // Word rules on top of the keywords: a passport's number is not a password; a bare
        // `token` or `key` is a secret; a last word `id` makes an identifier.
        if f & K_PASSPORT != 0 {
            f &= !K_PASSWORD;
        }
        if f & K_PASSWORD == 0 && (is(b"token") || is(b"key")) {
            f |= K_SECRET;
        }
        if f & K_PASSWORD != 0 {
            f &= !K_SECRET;
        }
        if last_word == b"id" || last_word == b"ids" {
            f |= K_NOT_PERSONAL;
        }
        Context(f)
    }
}

const K_CARD: u32 = 1;
const K_SSN: u32 = 1 << 1;
const K_ROUTING: u32 = 1 << 2;
const K_PHONE: u32 = 1 << 3;
const K_DOB: u32 = 1 << 4;
const K_PASSPORT: u32 = 1 << 5;
const K_NINO: u32 = 1 << 6;
const K_AADHAAR: u32 = 1 << 7;
const K_DNI: u32 = 1 << 8;
const K_BSN: u32 = 1 << 9;
const K_IBAN: u32 = 1 << 10;
const K_PASSWORD: u32 = 1 << 11;
const K_SECRET: u32 = 1 << 12;
const K_AWS_SECRET: u32 = 1 << 13;
const K_SESSION: u32 = 1 << 14;
const K_NOT_PERSONAL: u32 = 1 << 15;
const K_VERSION: u32 = 1 << 16;

/// Keywords of field names and what they say. Multi-word keywords are written as the
/// normalized name reads them (`card number`), and also run together (`cardnumber`).
const KEYWORDS: &[(u32, &[&str])] = &[
    (K_CARD, &["card", "ccnum", "creditcard", "pan", "cc"]),
    (K_SSN, &["ssn", "social security", "socialsecurity", "taxpayer", "itin"]),
    (K_ROUTING, &["routing", "aba", "rtn"]),
    (K_PHONE, &["phone", "mobile", "tel", "telephone", "fax", "msisdn", "cell"]),
    (K_DOB, &["birth", "dob", "bday", "birthday"]),
    (K_PASSPORT, &["passport"]),
    (K_NINO, &["nino", "national insurance", "nationalinsurance", "insurance number", "ni"]),
    (K_AADHAAR, &["aadhaar", "aadhar", "uidai"]),
    (K_DNI, &["dni", "nie", "nif"]),
    (K_BSN, &["bsn", "burgerservice"]),
    (K_IBAN, &["iban", "bank account", "bankaccount", "account"]),
    (K_PASSWORD, &["password", "passwd", "passphrase", "pwd", "pass"]),
    (
        K_SECRET,
        &[
            "secret",
            "api key",
            "apikey",
            "private key",
            "privatekey",
            "access token",
            "accesstoken",
            "refresh token",
            "refreshtoken",
            "client secret",
            "auth token",
            "authtoken",
        ],
    ),
    (K_AWS_SECRET, &["aws secret", "awssecret", "secret access key", "secretaccesskey", "secret key", "secretkey"]),
    (K_SESSION, &["session", "sessid", "sid"]),
    (
        K_NOT_PERSONAL,
        &[
            "order",
            "tracking",
            "invoice",
            "sku",
            "isbn",
            "upc",
            "ean",
            "timestamp",
            "created",
            "updated",
            "time",
            "count",
            "total",
            "amount",
            "price",
            "version",
            "build",
            "serial",
            "reference",
            "ref",
            "transaction",
            "shipment",
            "ticket",
            "offset",
            "limit",
            "page",
            "size",
            "port",
            "gtin",
            "barcode",
        ],
    ),
    (K_VERSION, &["version", "build", "release"]),
];

fn keywords() -> &'static (AhoCorasick, Vec<(u32, bool)>) {
    static KW: std::sync::OnceLock<(AhoCorasick, Vec<(u32, bool)>)> = std::sync::OnceLock::new();
    KW.get_or_init(|| {
        let mut pats = Vec::new();
        let mut meta = Vec::new();
        for (flag, words) in KEYWORDS {
            for w in *words {
                pats.push(*w);
                meta.push((*flag, w.len() < 5));
            }
        }
        (AhoCorasick::new(pats).expect("valid keywords"), meta)
    })
}

/// A type from the configuration: a regular expression, an optional validator, and
/// keywords of which one must be in the field name (if any are given).
#[derive(Debug, Clone)]
pub struct CustomType {
    pub name: String,
    pub regex: regex::Regex,
    pub validator: Option<Validator>,
    pub keywords: Vec<String>,
}

/// Validators a custom type may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validator {
    Luhn,
    Iban,
    Mod97,
    Verhoeff,
}

impl std::str::FromStr for Validator {
    type Err = String;
    fn from_str(s: &str) -> Result<Validator, String> {
        match s {
            "luhn" => Ok(Validator::Luhn),
            "iban" => Ok(Validator::Iban),
            "mod97" => Ok(Validator::Mod97),
            "verhoeff" => Ok(Validator::Verhoeff),
            _ => Err(format!("unknown validator `{s}` (luhn, iban, mod97, verhoeff)")),
        }
    }
}

impl Validator {
    fn check(self, v: &str) -> bool {
        let d: Vec<u8> = v.bytes().filter(u8::is_ascii_alphanumeric).collect();
        match self {
            Validator::Luhn => validate::luhn(&d),
            Validator::Iban => validate::iban(&d),
            Validator::Mod97 => {
                d.iter().all(u8::is_ascii_digit) && d.iter().fold(0u32, |r, &c| (r * 10 + (c - b'0') as u32) % 97) == 1
            }
            Validator::Verhoeff => validate::aadhaar(&d),
        }
    }
}

/// Settings of the classifier.
#[derive(Debug, Clone)]
pub struct Config {
    /// Key of the keyed hashes (HMAC-SHA256), so that the same value can be correlated
    /// across findings and agents sharing the key, without being revealed.
    pub hash_key: Vec<u8>,
    /// Mask values (the default). Off only for local debugging: findings then carry values
    /// in clear.
    pub redact: bool,
    pub custom: Vec<CustomType>,
    /// Findings kept per scanned message at most.
    pub max_findings: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { hash_key: b"apiwatch-default-key".to_vec(), redact: true, custom: Vec::new(), max_findings: 64 }
    }
}

#[derive(Clone, Copy)]
enum Anchor {
    AwsKey,
    Github,
    GithubPat,
    Gitlab,
    Slack,
    Stripe,
    Google,
    Jwt,
    Pem,
    At,
    AzureKey,
    Sas,
}

const ANCHORS: &[(&str, Anchor)] = &[
    ("AKIA", Anchor::AwsKey),
    ("ASIA", Anchor::AwsKey),
    ("ghp_", Anchor::Github),
    ("gho_", Anchor::Github),
    ("ghu_", Anchor::Github),
    ("ghs_", Anchor::Github),
    ("ghr_", Anchor::Github),
    ("github_pat_", Anchor::GithubPat),
    ("glpat-", Anchor::Gitlab),
    ("xoxb-", Anchor::Slack),
    ("xoxp-", Anchor::Slack),
    ("xoxa-", Anchor::Slack),
    ("xoxr-", Anchor::Slack),
    ("xoxs-", Anchor::Slack),
    ("sk_live_", Anchor::Stripe),
    ("rk_live_", Anchor::Stripe),
    ("sk_test_", Anchor::Stripe),
    ("AIza", Anchor::Google),
    ("eyJ", Anchor::Jwt),
    ("-----BEGIN", Anchor::Pem),
    ("@", Anchor::At),
    ("AccountKey=", Anchor::AzureKey),
    ("sig=", Anchor::Sas),
];

/// Anchor matches found in a whole body (start, end, index in ANCHORS) that lie in one
/// value, and the body offset where the value starts.
pub(crate) type BodyAnchors<'a> = (&'a [(u32, u32, u16)], u32);

/// Index of `@` in ANCHORS.
const AT: usize = 20;

/// The classifier: built once, shared read-only by whoever scans.
pub struct Classifier {
    pub(crate) cfg: Config,
    ac: AhoCorasick,
    /// The anchors but `@`, for whole bodies: a SIMD (Teddy) searcher where the CPU has
    /// one; `@` itself is found by `memchr`.
    packed: Option<aho_corasick::packed::Searcher>,
    hmac: hmac::Hmac<sha2::Sha256>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier").field("custom", &self.cfg.custom.len()).finish()
    }
}

fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether `b` may hold a token type: each has at least four digits (an IPv4 address has
/// four, every other type more), or is an IPv6 address, which has `::` or at least six
/// colons. Counted without early exits, so that it compiles to vector code.
#[inline]
fn may_hold_tokens(b: &[u8]) -> bool {
    let (digits, colons) =
        b.iter().fold((0u32, 0u32), |(d, k), &c| (d + u32::from(c.wrapping_sub(b'0') < 10), k + u32::from(c == b':')));
    digits >= 4 || colons >= 6 || colons >= 2 && b.windows(2).any(|w| w == b"::")
}

/// An ISO 8601 date or date-time as APIs write them: `2026-08-23`, `2026-08-23T22:49:33Z`,
/// `2026-08-23 22:49:33.123+02:00`.
fn iso_timestamp(b: &[u8]) -> bool {
    let d = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let date = b.len() >= 10 && (0..4).all(d) && at(4, b'-') && d(5) && d(6) && at(7, b'-') && d(8) && d(9);
    if !date || b.len() == 10 {
        return date;
    }
    if !(matches!(b[10], b'T' | b't' | b' ') && d(11) && d(12) && at(13, b':') && d(14) && d(15)) {
        return false;
    }
    let mut i = 16;
    if at(i, b':') {
        if !(d(i + 1) && d(i + 2)) {
            return false;
        }
        i += 3;
        if at(i, b'.') || at(i, b',') {
            let s = i + 1;
            i = s;
            while d(i) {
                i += 1;
            }
            if i == s || i - s > 9 {
                return false;
            }
        }
    }
    match b.get(i) {
        None => true,
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let z = &b[i + 1..];
            let two = |k: usize| z.get(k..k + 2).is_some_and(|p| p.iter().all(u8::is_ascii_digit));
            match z.len() {
                2 => two(0),
                4 => two(0) && two(2),
                5 => two(0) && z[2] == b':' && two(3),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Where the first digit or colon at or after `i` is (`b.len()` if none): 8 bytes a step.
fn next_digit_or_colon(b: &[u8], mut i: usize) -> usize {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while i + 8 <= b.len() {
        let v = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let t = v & LOW7;
        // Per byte, without carries (t <= 0x7f): high bit of t + 0x50 is set from 0x30 on,
        // of t + 0x45 from 0x3b on; bytes with their own high bit set are not ASCII.
        let m = t.wrapping_add(0x5050_5050_5050_5050) & !t.wrapping_add(0x4545_4545_4545_4545) & !v & HIGH;
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i].wrapping_sub(b'0') > 10 {
        i += 1;
    }
    i
}

/// Bytes that no token holds: a token never runs across one, and one is never a letter or
/// digit, so what follows it starts afresh. (A table: tested for every byte of a value.)
#[inline]
fn splits(c: u8) -> bool {
    const SPLITS: [bool; 256] = {
        let mut t = [false; 256];
        let set = b"/,;=&?#\"'<>[]{}|\\*!%\t\n\r";
        let mut k = 0;
        while k < set.len() {
            t[set[k] as usize] = true;
            k += 1;
        }
        t
    };
    SPLITS[c as usize]
}

/// Length of the run from `i` of bytes that satisfy `f`.
fn run(b: &[u8], i: usize, f: impl Fn(u8) -> bool) -> usize {
    b[i.min(b.len())..].iter().take_while(|&&c| f(c)).count()
}

impl Classifier {
    pub fn new(cfg: Config) -> Classifier {
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(ANCHORS.iter().map(|(p, _)| p))
            .expect("the anchors are valid patterns");
        let packed = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            .builder()
            .extend(ANCHORS.iter().filter(|(p, _)| *p != "@").map(|(p, _)| p))
            .build();
        let hmac = mask::hasher(&cfg.hash_key);
        Classifier { cfg, ac, packed, hmac }
    }

    fn finding(&self, ty: DataType, loc: Location, field: &str, value: &str, confidence: u8) -> Finding {
        Finding {
            ty,
            location: loc,
            field: field.to_string(),
            masked: if self.cfg.redact { mask::mask_into(ty, value) } else { value.into() },
            hash: mask::keyed_hash_with(&self.hmac, ty, value),
            confidence,
            detail: None,
        }
    }

    /// Scan `value`, found under the name `name` (a JSON key, a parameter or header name,
    /// empty if none) at `field` of `loc`.
    pub fn scan_value(&self, loc: Location, field: &str, name: &str, value: &str, out: &mut Vec<Finding>) {
        if value.trim().is_empty() || out.len() >= self.cfg.max_findings {
            return;
        }
        self.scan_in_context(loc, field, (name, &Context::of(name)), value, None, out);
    }

    /// Anchor matches over a whole body, found in one pass, into `v`: (start, end, anchor
    /// index), in order.
    pub(crate) fn anchors_into(&self, body: &[u8], v: &mut Vec<(u32, u32, u16)>) {
        v.clear();
        let Some(packed) = &self.packed else {
            v.extend(
                self.ac.find_iter(body).map(|m| (m.start() as u32, m.end() as u32, m.pattern().as_usize() as u16)),
            );
            return;
        };
        // The packed searcher numbers the anchors without `@`; `@` is the pattern at AT.
        v.extend(packed.find_iter(body).map(|m| {
            let p = m.pattern().as_usize();
            (m.start() as u32, m.end() as u32, (p + usize::from(p >= AT)) as u16)
        }));
        let plain = v.len();
        v.extend(memchr::memchr_iter(b'@', body).map(|i| (i as u32, i as u32 + 1, AT as u16)));
        if plain > 0 && v.len() > plain {
            v.sort_unstable_by_key(|a| a.0);
        }
    }

    /// Whether `value` may hold anything to find. Most values do not: too few digits for
    /// the token types (or a timestamp, whose digits are none of them), no anchor
    /// (`anchors`: how many lie in it, if known), under a name that says nothing. Cheap
    /// enough to call for every value.
    #[inline]
    pub(crate) fn worth_scanning(&self, ctx: &Context, value: &str, anchors: Option<usize>) -> bool {
        ctx.password()
            || ctx.secret()
            || ctx.session()
            || ctx.aws_secret()
            || ctx.dob()
            || ctx.passport()
            || anchors != Some(0)
            || !self.cfg.custom.is_empty()
            || self.tokens_worth_reading(ctx, value.as_bytes())
    }

    /// Whether the token walk could find anything in `b`.
    #[inline]
    fn tokens_worth_reading(&self, ctx: &Context, b: &[u8]) -> bool {
        // A timestamp's groups are no token type; under a phone's name the digits could
        // still be read as one, so the walk decides there.
        may_hold_tokens(b) && (ctx.phone() || !iso_timestamp(b))
    }

    /// `scan_value` with the name already read (walkers read each key once): `named` is the
    /// name and what it says; `anchors`, the anchor matches found in the whole body that lie
    /// in `value`, with the body offset where `value` starts.
    pub(crate) fn scan_in_context(
        &self,
        loc: Location,
        field: &str,
        named: (&str, &Context),
        value: &str,
        anchors: Option<BodyAnchors<'_>>,
        out: &mut Vec<Finding>,
    ) {
        let (name, ctx) = (named.0, *named.1);
        if !self.worth_scanning(&ctx, value, anchors.map(|(hits, _)| hits.len())) {
            return;
        }
        let lead = value.len() - value.trim_start().len();
        let value = value.trim();
        if value.is_empty() || out.len() >= self.cfg.max_findings {
            return;
        }
        let start = out.len();
        let b = value.as_bytes();
        // Whole-value types that only the name tells.
        if (ctx.password() || ctx.secret() || ctx.session()) && !placeholder(value) {
            let ty = if ctx.password() {
                DataType::Password
            } else if ctx.session() {
                DataType::SessionId
            } else {
                DataType::Secret
            };
            out.push(self.finding(ty, loc, field, value, 90));
        }
        if ctx.aws_secret() && b.len() == 40 && b.iter().all(|&c| is_b64(c)) {
            out.push(self.finding(DataType::AwsSecretKey, loc, field, value, 95));
            if out.len() > start + 1 {
                out.remove(start); // not also a generic secret
            }
        }
        if ctx.dob() && looks_like_date(value) {
            out.push(self.finding(DataType::DateOfBirth, loc, field, value, 90));
        }
        if ctx.passport() && passport_shape(b) {
            out.push(self.finding(DataType::Passport, loc, field, value, 85));
        }
        // Anchored formats.
        match anchors {
            // Found in the whole body already (offsets relative to the untrimmed value).
            Some((hits, base)) => {
                for &(s, e, p) in hits {
                    let (s, e) = ((s - base) as usize, (e - base) as usize);
                    let (s, e) = (s.wrapping_sub(lead), e.wrapping_sub(lead));
                    if s < e && e <= b.len() {
                        self.anchored(ANCHORS[p as usize].1, b, (s, e), loc, field, out);
                    }
                }
            }
            None => {
                for m in self.ac.find_iter(b) {
                    self.anchored(ANCHORS[m.pattern().as_usize()].1, b, (m.start(), m.end()), loc, field, out);
                }
            }
        }
        // Tokens: digit runs and words. Every token type has a digit (or a colon, IPv6).
        if self.tokens_worth_reading(&ctx, b) {
            self.tokens(b, loc, field, &ctx, out);
        }
        for (k, c) in self.cfg.custom.iter().enumerate() {
            if !c.keywords.is_empty() && !c.keywords.iter().any(|k| name.to_ascii_lowercase().contains(k.as_str())) {
                continue;
            }
            for m in c.regex.find_iter(value) {
                if c.validator.is_none_or(|v| v.check(m.as_str())) {
                    out.push(self.finding(DataType::Custom(k as u16), loc, field, m.as_str(), 80));
                }
            }
        }
        // A secret-named field that held a JWT or a key is that, not a second finding.
        if out.len() > start + 1 {
            let specific = out[start..].iter().any(|f| !matches!(f.ty, DataType::Secret | DataType::Password));
            if specific && out[start].ty == DataType::Secret {
                out.remove(start);
            }
        }
        out.truncate(self.cfg.max_findings);
    }

    fn anchored(
        &self,
        a: Anchor,
        b: &[u8],
        (s, e): (usize, usize),
        loc: Location,
        field: &str,
        out: &mut Vec<Finding>,
    ) {
        let text = |x: usize, y: usize| std::str::from_utf8(&b[x..y]).unwrap_or("");
        let before_ok = s == 0 || !is_word(b[s - 1]);
        match a {
            Anchor::AwsKey => {
                let n = run(b, e, |c| c.is_ascii_uppercase() || c.is_ascii_digit());
                if before_ok && n == 16 && (e + n == b.len() || !is_word(b[e + n])) {
                    out.push(self.finding(DataType::AwsAccessKeyId, loc, field, text(s, e + n), 95));
                }
            }
            Anchor::Github | Anchor::GithubPat | Anchor::Gitlab | Anchor::Stripe | Anchor::Google => {
                let n = run(b, e, |c| is_word(c) || c == b'-');
                let (ty, ok) = match a {
                    Anchor::Github => (DataType::GithubToken, n == 36),
                    Anchor::GithubPat => (DataType::GithubToken, n >= 60),
                    Anchor::Gitlab => (DataType::GitlabToken, n == 20),
                    Anchor::Stripe => (DataType::StripeKey, n >= 24),
                    _ => (DataType::GoogleApiKey, n == 35),
                };
                if before_ok && ok {
                    out.push(self.finding(ty, loc, field, text(s, e + n), 95));
                }
            }
            Anchor::Slack => {
                let n = run(b, e, |c| c.is_ascii_alphanumeric() || c == b'-');
                if before_ok && n >= 20 && b[e..e + n].iter().filter(|&&c| c == b'-').count() >= 2 {
                    out.push(self.finding(DataType::SlackToken, loc, field, text(s, e + n), 95));
                }
            }
            Anchor::Jwt => {
                let n = run(b, s, |c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
                if before_ok {
                    if let Some(alg) = jwt_alg(&b[s..s + n]) {
                        let mut f = self.finding(DataType::Jwt, loc, field, text(s, s + n), 99);
                        f.detail = Some(alg);
                        out.push(f);
                    }
                }
            }
            Anchor::Pem => {
                let rest = &b[e..];
                let line_end = rest.iter().position(|&c| c == b'-').unwrap_or(0);
                let label = text(e, e + line_end).trim();
                if label.ends_with("PRIVATE KEY") && rest.len() > line_end + 5 && rest[line_end..].starts_with(b"-----")
                {
                    let f = self.finding(DataType::PrivateKey, loc, field, label, 99);
                    out.push(f);
                }
            }
            Anchor::At => self.email(b, s, loc, field, out),
            Anchor::AzureKey => {
                let n = run(b, e, |c| is_b64(c) || c == b'=');
                if n == 88 && b[e + n - 2..e + n] == *b"==" {
                    out.push(self.finding(DataType::AzureStorageKey, loc, field, text(e, e + n), 95));
                }
            }
            Anchor::Sas => {
                let n = run(b, e, |c| is_b64(c) || c == b'%' || c == b'=');
                let has_sv = b.windows(3).any(|w| w == b"sv=");
                if n >= 40 && has_sv && (s == 0 || matches!(b[s - 1], b'&' | b'?')) {
                    out.push(self.finding(DataType::AzureSas, loc, field, text(e, e + n), 90));
                }
            }
        }
    }

    fn email(&self, b: &[u8], at: usize, loc: Location, field: &str, out: &mut Vec<Finding>) {
        let local_ok = |c: u8| c.is_ascii_alphanumeric() || b"._%+-".contains(&c);
        let mut s = at;
        while s > 0 && local_ok(b[s - 1]) && at - s < 64 {
            s -= 1;
        }
        let dom = run(b, at + 1, |c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
        let mut d = &b[at + 1..at + 1 + dom];
        while d.last() == Some(&b'.') {
            d = &d[..d.len() - 1];
        }
        let local = &b[s..at];
        let labels: Vec<&[u8]> = d.split(|&c| c == b'.').collect();
        let tld = labels.last().copied().unwrap_or(b"");
        let ok = !local.is_empty()
            && local[0] != b'.'
            && labels.len() >= 2
            && labels.iter().all(|l| !l.is_empty() && l[0] != b'-')
            && tld.len() >= 2
            && tld.iter().all(u8::is_ascii_alphabetic);
        if ok {
            let v = std::str::from_utf8(&b[s..at + 1 + d.len()]).unwrap_or("");
            out.push(self.finding(DataType::Email, loc, field, v, 95));
        }
    }

    /// The tokens of `b`, a piece at a time: pieces end at bytes no token holds (`/`, `,`,
    /// `=`, `&`, quotes...), and a piece with no digit and no colon holds no token type, so
    /// it is passed over (URLs and text are mostly such pieces).
    fn tokens(&self, b: &[u8], loc: Location, field: &str, ctx: &Context, out: &mut Vec<Finding>) {
        // From each digit or colon, back to the start of its piece and on to its end.
        let mut i = 0;
        while i < b.len() {
            let p = next_digit_or_colon(b, i);
            if p == b.len() {
                break;
            }
            let mut s = p;
            while s > i && !splits(b[s - 1]) {
                s -= 1;
            }
            let e = b[p..].iter().position(|&c| splits(c)).map_or(b.len(), |k| p + k);
            // Tokens read on past the piece's end as they did before (a look-ahead sees
            // the same byte); where they stop, scanning goes on.
            let next = self.tokens_in(b, s, e, loc, field, ctx, out);
            i = if next > e { next } else { e + 1 };
        }
    }

    /// Tokens starting in `b[from..to]`; returns where the last one ended.
    #[allow(clippy::too_many_arguments)]
    fn tokens_in(
        &self,
        b: &[u8],
        from: usize,
        to: usize,
        loc: Location,
        field: &str,
        ctx: &Context,
        out: &mut Vec<Finding>,
    ) -> usize {
        let mut i = from;
        while i < to {
            let c = b[i];
            let boundary = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
            if !boundary {
                i += 1;
                continue;
            }
            if c.is_ascii_digit() || (c == b'+' || c == b'(') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                i = self.digits(b, i, loc, field, ctx, out);
            } else if c.is_ascii_alphabetic() {
                i = self.word(b, i, loc, field, ctx, out);
            } else {
                i += 1;
            }
        }
        i
    }

    /// A run of digits with single separators between groups (`4111 1111 1111 1111`,
    /// `123-45-6789`, `+44 20 7946 0958`, `10.1.2.3`). Returns where scanning goes on.
    fn digits(&self, b: &[u8], s: usize, loc: Location, field: &str, ctx: &Context, out: &mut Vec<Finding>) -> usize {
        // Digits, group lengths and separators: at most 24 digits, so at most 24 groups.
        let mut d = Digits::default();
        let mut groups = Digits::default();
        let mut seps = Digits::default();
        // IPv6 starting with a digit (`2001:db8::1`, `662c:193e:...`).
        let hex = run(b, s, |c| c.is_ascii_hexdigit());
        if hex <= 4 && b.get(s + hex) == Some(&b':') {
            if let Some(e) = self.ipv6(b, s, loc, field, ctx, out) {
                return e;
            }
        }
        let mut i = s;
        let plus = b[i] == b'+';
        if plus || b[i] == b'(' {
            i += 1;
        }
        let mut glen = 0u8;
        while i < b.len() && d.len < 24 {
            let c = b[i];
            if c.is_ascii_digit() {
                d.push(c);
                glen += 1;
                i += 1;
            } else if matches!(c, b' ' | b'-' | b'.' | b')') && b.get(i + 1).is_some_and(u8::is_ascii_digit) && glen > 0
                || c == b')'
                    && matches!(b.get(i + 1), Some(b' ' | b'-'))
                    && b.get(i + 2).is_some_and(u8::is_ascii_digit)
            {
                groups.push(glen);
                seps.push(c);
                glen = 0;
                i += if c == b')' && matches!(b[i + 1], b' ' | b'-') { 2 } else { 1 };
            } else {
                break;
            }
        }
        groups.push(glen);
        let (d, groups, seps) = (d.get(), groups.get(), seps.get());
        // A Spanish DNI: 8 digits and the check letter.
        if d.len() == 8 && seps.is_empty() && !plus && i < b.len() && b[i].is_ascii_alphabetic() {
            let end = i + 1;
            let alone = end == b.len() || !(b[end].is_ascii_alphanumeric() || matches!(b[end], b'_' | b'-'));
            if alone && validate::dni(&b[s..end]) && (ctx.dni() || !ctx.not_personal()) {
                let conf = if ctx.dni() { 95 } else { 75 };
                out.push(self.finding(
                    DataType::EsDni,
                    loc,
                    field,
                    std::str::from_utf8(&b[s..end]).unwrap_or(""),
                    conf,
                ));
                return end;
            }
        }
        // A phone number's extension (`555-0100x23`, `ext123`) ends the number.
        let extension = (plus || ctx.phone()) && d.len() >= 7 && {
            let x = if b[i..].starts_with(b"x") || b[i..].starts_with(b"X") {
                1
            } else if b[i..].starts_with(b"ext") {
                3
            } else {
                0
            };
            let n = run(b, i + x, |c| c.is_ascii_digit());
            x > 0 && (1..=6).contains(&n) && b.get(i + x + n).is_none_or(|c| !c.is_ascii_alphanumeric())
        };
        // A run glued to letters is part of an identifier (hashes, UUIDs, SKUs).
        if !extension && i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'_') {
            return i + run(b, i, |c| c.is_ascii_alphanumeric() || c == b'_');
        }
        let raw = std::str::from_utf8(&b[s..i]).unwrap_or("");
        let n = d.len();
        let one_sep = seps.windows(2).all(|w| w[0] == w[1]);
        let dots = seps.iter().all(|&c| c == b'.');
        // IPv4: four dotted groups of up to 3 digits, each at most 255, not in a version field.
        if dots && groups.len() == 4 && groups.iter().all(|&g| (1..=3).contains(&g)) {
            if !ctx.version() && raw.parse::<std::net::Ipv4Addr>().is_ok() && b.get(i).is_none_or(|&c| c != b'.') {
                out.push(self.finding(DataType::IpAddress, loc, field, raw, 80));
            }
            return i;
        }
        // Other dotted numbers are versions and decimals, but under a phone name
        // `555.010.0199` is a phone number.
        if dots && !seps.is_empty() && !(ctx.phone() && groups.len() >= 3) {
            return i;
        }
        let sep_card = seps.is_empty() || one_sep && seps[0] != b'.';
        // Luhn-valid numbers under id, order or tracking names are not cards.
        // Twelve digits (Maestro) only under a card name: too many other numbers have them.
        let length = (13..=19).contains(&n) || n == 12 && ctx.card();
        if length && sep_card && !plus && validate::card(d) && (!ctx.not_personal() || ctx.card()) {
            out.push(self.finding(DataType::CreditCard, loc, field, raw, if ctx.card() { 99 } else { 90 }));
            return i;
        }
        if n == 9 && validate::ssn(d) {
            let dashed = groups == [3, 2, 4] && one_sep && seps[0] == b'-';
            if ctx.ssn() || (dashed && !ctx.not_personal() && !ctx.phone()) {
                out.push(self.finding(DataType::UsSsn, loc, field, raw, if ctx.ssn() { 99 } else { 85 }));
                return i;
            }
        }
        if n == 9 && ctx.routing() && seps.is_empty() && validate::aba(d) {
            out.push(self.finding(DataType::AbaRouting, loc, field, raw, 95));
            return i;
        }
        if n == 9 && ctx.bsn() && validate::bsn(d) {
            out.push(self.finding(DataType::NlBsn, loc, field, raw, 95));
            return i;
        }
        if n == 12 && validate::aadhaar(d) && (ctx.aadhaar() || groups == [4, 4, 4] && one_sep && seps[0] == b' ') {
            out.push(self.finding(DataType::InAadhaar, loc, field, raw, if ctx.aadhaar() { 99 } else { 80 }));
            return i;
        }
        // Phones: E.164 (`+` and 8-15 digits) anywhere; national formats only under a
        // phone-like name.
        let national = ctx.phone() && (7..=15).contains(&n) && !ctx.not_personal();
        let e164 = plus && (8..=15).contains(&n) && d[0] != b'0';
        if e164 || national {
            out.push(self.finding(DataType::Phone, loc, field, raw, if ctx.phone() { 95 } else { 75 }));
        }
        i
    }

    /// An alphanumeric word: IBAN (also in groups of four), UK NINO, Spanish DNI/NIE, IPv6.
    fn word(&self, b: &[u8], s: usize, loc: Location, field: &str, ctx: &Context, out: &mut Vec<Finding>) -> usize {
        let n = run(b, s, |c| c.is_ascii_alphanumeric());
        let w = &b[s..s + n];
        let end = s + n;
        // A word that goes on with `-`, `_` or `/` is part of a code (`AB123456C-X`).
        let alone = end == b.len() || !matches!(b[end], b'-' | b'_' | b'/');
        let personal = alone && (!ctx.not_personal() || ctx.nino() || ctx.dni());
        // IPv6 starting with a letter (`fe80::1`, `abcd:...`).
        if b.get(end) == Some(&b':') && w.iter().all(u8::is_ascii_hexdigit) {
            if let Some(e) = self.ipv6(b, s, loc, field, ctx, out) {
                return e;
            }
        }
        if n >= 4
            && w[0].is_ascii_uppercase()
            && w[1].is_ascii_uppercase()
            && w[2].is_ascii_digit()
            && w[3].is_ascii_digit()
        {
            // IBAN, written whole or in groups of four.
            let mut compact: Vec<u8> = w.to_vec();
            let mut e = end;
            while compact.len() < 34 && b.get(e) == Some(&b' ') && b.get(e + 1).is_some_and(u8::is_ascii_alphanumeric) {
                let k = run(b, e + 1, |c| c.is_ascii_alphanumeric());
                if k > 4 {
                    break;
                }
                compact.extend_from_slice(&b[e + 1..e + 1 + k]);
                e += 1 + k;
            }
            if validate::iban(&compact) {
                let raw = std::str::from_utf8(&b[s..e]).unwrap_or("");
                out.push(self.finding(DataType::Iban, loc, field, raw, if ctx.iban() { 99 } else { 95 }));
                return e;
            }
            if validate::iban(w) {
                let raw = std::str::from_utf8(w).unwrap_or("");
                out.push(self.finding(DataType::Iban, loc, field, raw, 95));
                return end;
            }
        }
        // UK NINO: `AB123456C` or `AB 12 34 56 C`.
        if n == 9 && personal && validate::nino(w) {
            let conf = if ctx.nino() { 99 } else { 85 };
            out.push(self.finding(DataType::UkNino, loc, field, std::str::from_utf8(w).unwrap_or(""), conf));
            return end;
        }
        if n == 2 && w.iter().all(u8::is_ascii_uppercase) && b.get(end) == Some(&b' ') {
            let mut compact = w.to_vec();
            let mut e = end;
            for want in [2, 2, 2, 1] {
                if b.get(e) != Some(&b' ') {
                    break;
                }
                let k = run(b, e + 1, |c| c.is_ascii_alphanumeric());
                if k != want {
                    break;
                }
                compact.extend_from_slice(&b[e + 1..e + 1 + k]);
                e += 1 + k;
            }
            if compact.len() == 9 && validate::nino(&compact) {
                let raw = std::str::from_utf8(&b[s..e]).unwrap_or("");
                out.push(self.finding(DataType::UkNino, loc, field, raw, if ctx.nino() { 99 } else { 85 }));
                return e;
            }
        }
        // NIE (`X1234567L`): a letter first; DNI (`12345678Z`) starts with a digit and is
        // handled here too when the digits run into the letter.
        if n == 9 && personal && (ctx.dni() || matches!(w[0], b'X' | b'Y' | b'Z')) && validate::dni(w) {
            out.push(self.finding(DataType::EsDni, loc, field, std::str::from_utf8(w).unwrap_or(""), 90));
            return end;
        }
        end
    }

    fn ipv6(
        &self,
        b: &[u8],
        s: usize,
        loc: Location,
        field: &str,
        ctx: &Context,
        out: &mut Vec<Finding>,
    ) -> Option<usize> {
        let n = run(b, s, |c| c.is_ascii_hexdigit() || c == b':' || c == b'.');
        let raw = std::str::from_utf8(&b[s..s + n]).ok()?;
        let colons = raw.bytes().filter(|&c| c == b':').count();
        if colons >= 2 && !ctx.version() && raw.parse::<std::net::Ipv6Addr>().is_ok() {
            out.push(self.finding(DataType::IpAddress, loc, field, raw, 85));
            return Some(s + n);
        }
        None
    }
}

/// A few bytes on the stack (the digits of a number, its groups): extra pushes are dropped.
#[derive(Default)]
struct Digits {
    buf: [u8; 24],
    len: usize,
}

impl Digits {
    fn push(&mut self, c: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = c;
            self.len += 1;
        }
    }

    fn get(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Values that stand for "no value": nothing to report under a password name.
fn placeholder(v: &str) -> bool {
    let l = v.to_ascii_lowercase();
    v.len() < 4
        || v.bytes().all(|c| c == b'*' || c == b'x' || c == b'X' || c == b'.' || c == b'-' || c == b'#')
        || matches!(
            l.as_str(),
            "null"
                | "none"
                | "true"
                | "false"
                | "redacted"
                | "[redacted]"
                | "<redacted>"
                | "masked"
                | "hidden"
                | "changeme"
                | "undefined"
        )
}

fn looks_like_date(v: &str) -> bool {
    let d: Vec<&str> = v.split(['-', '/', '.', 'T', ' ']).filter(|p| !p.is_empty()).take(3).collect();
    if d.len() < 3 || !d.iter().all(|p| p.bytes().all(|c| c.is_ascii_digit())) {
        return false;
    }
    let n: Vec<u32> = d.iter().map(|p| p.parse().unwrap_or(0)).collect();
    let (y, m, day) = if d[0].len() == 4 { (n[0], n[1], n[2]) } else { (n[2], n[1].min(n[0]), n[0].max(n[1])) };
    (1900..=2100).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&day)
}

/// A passport number: 6 to 9 letters and digits, at least 5 of them digits.
fn passport_shape(b: &[u8]) -> bool {
    (6..=9).contains(&b.len())
        && b.iter().all(u8::is_ascii_alphanumeric)
        && b.iter().filter(|c| c.is_ascii_digit()).count() >= 5
}

/// A JWT's `alg`, if `tok` is three base64url parts whose first two decode to JSON objects.
fn jwt_alg(tok: &[u8]) -> Option<String> {
    use base64::Engine;
    let parts: Vec<&[u8]> = tok.split(|&c| c == b'.').collect();
    if parts.len() != 3 || parts[0].len() < 10 || parts[1].len() < 4 || !parts[1].starts_with(b"eyJ") {
        return None;
    }
    let eng = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = eng.decode(parts[0].strip_suffix(b"=").unwrap_or(parts[0])).ok()?;
    let body = eng.decode(parts[1]).ok()?;
    if !body.starts_with(b"{") {
        return None;
    }
    let h = std::str::from_utf8(&head).ok()?;
    let i = h.find("\"alg\"")?;
    let rest = h[i + 5..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let alg = &rest[..rest.find('"')?];
    (alg.len() <= 16 && alg.bytes().all(|c| c.is_ascii_alphanumeric())).then(|| alg.to_string())
}

#[cfg(test)]
mod fast_paths {
    //! The shortcuts taken for speed give what the plain ways give.
    use super::*;

    /// Random bytes from an alphabet rich in what the detectors look at.
    fn noise(seed: &mut u32, len: usize, alphabet: &[u8]) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                alphabet[(*seed >> 16) as usize % alphabet.len()]
            })
            .collect()
    }

    #[test]
    fn next_digit_or_colon_matches_a_plain_search() {
        let mut seed = 7;
        for len in 0..200 {
            let b = noise(&mut seed, len, b"abc:09/ \x80\xff\x2f\x3b;Z4");
            for from in 0..=len {
                let plain = b[from..].iter().position(|c| c.is_ascii_digit() || *c == b':').map_or(len, |p| from + p);
                assert_eq!(next_digit_or_colon(&b, from), plain, "{b:?} from {from}");
            }
        }
    }

    #[test]
    fn pieces_find_what_one_pass_finds() {
        let c = Classifier::new(Config::default());
        let mut seed = 11;
        let ctx = [Context::default(), Context::of("phone"), Context::of("nino"), Context::of("version")];
        let mut found = 0;
        for len in 1..300 {
            let mut b = noise(&mut seed, len, b"0123456789 -.+()/,:=&AB XZ GBfe80 /?4111");
            // Plant values among the noise now and then.
            if len % 3 == 0 {
                let at = len / 2;
                let v: &[u8] =
                    [&b"4111 1111 1111 1111"[..], b"AB 12 34 56 C", b"fe80::1", b"+44 20 7946 0958"][len % 4];
                b.splice(at..at, v.iter().copied());
            }
            for x in &ctx {
                let (mut one, mut pieces) = (Vec::new(), Vec::new());
                c.tokens_in(&b, 0, b.len(), Location::ResponseBody, "", x, &mut one);
                c.tokens(&b, Location::ResponseBody, "", x, &mut pieces);
                let key = |f: &Finding| (f.ty, f.hash);
                assert_eq!(
                    one.iter().map(key).collect::<Vec<_>>(),
                    pieces.iter().map(key).collect::<Vec<_>>(),
                    "{:?}",
                    String::from_utf8_lossy(&b)
                );
                found += one.len();
            }
        }
        assert!(found > 100, "the planted values are found ({found})");
    }

    #[test]
    fn values_passed_over_hold_no_token() {
        let c = Classifier::new(Config::default());
        let mut seed = 17;
        let mut skipped = 0;
        for len in 1..400 {
            let b = noise(&mut seed, len % 40, b"0123456789 -.+():TZ/abAB:");
            for x in [Context::default(), Context::of("phone"), Context::of("nino")] {
                if !c.tokens_worth_reading(&x, &b) {
                    let mut out = Vec::new();
                    c.tokens_in(&b, 0, b.len(), Location::ResponseBody, "", &x, &mut out);
                    assert!(out.is_empty(), "{:?} under {x:?}: {out:?}", String::from_utf8_lossy(&b));
                    skipped += 1;
                }
            }
        }
        assert!(skipped > 100);
        for ts in ["2026-08-23", "2026-08-23T22:49:33Z", "2026-08-23 22:49:33.123+02:00", "2026-08-23T22:49+0200"] {
            assert!(iso_timestamp(ts.as_bytes()), "{ts}");
        }
        for not in
            ["2026-08-23T", "2026-08-23T22:49:33Zx", "20260823", "2026-08-23T22:49:33.+02", "4111-1111-1111-1111"]
        {
            assert!(!iso_timestamp(not.as_bytes()), "{not}");
        }
    }

    #[test]
    fn packed_anchors_match_the_automaton() {
        let c = Classifier::new(Config::default());
        let mut seed = 3;
        let mut total = 0;
        for len in 0..400 {
            let mut b = noise(&mut seed, len, b"AKIASghp_o-xob@eyJsig=Acc\"{}: ");
            b.extend_from_slice(b"x@y AKIA ghp_ github_pat_ -----BEGIN sig= AccountKey= eyJ");
            let mut v = Vec::new();
            c.anchors_into(&b, &mut v);
            let plain: Vec<(u32, u32, u16)> =
                c.ac.find_iter(&b).map(|m| (m.start() as u32, m.end() as u32, m.pattern().as_usize() as u16)).collect();
            assert_eq!(v, plain, "{:?}", String::from_utf8_lossy(&b));
            total += v.len();
        }
        assert_eq!(ANCHORS[AT].0, "@");
        assert!(total > 3000);
    }
}
