//! What one path segment (or query value) looks like: an identifier-like value, a word of
//! the API's vocabulary, or something in between.

use serde::{Deserialize, Serialize};

/// The shape of a value seen in a path segment or a query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Integer,
    Number,
    Boolean,
    Uuid,
    Date,
    DateTime,
    Email,
    Ip,
    Hex,
    Token,
    Slug,
    String,
    Empty,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Integer,
        Kind::Number,
        Kind::Boolean,
        Kind::Uuid,
        Kind::Date,
        Kind::DateTime,
        Kind::Email,
        Kind::Ip,
        Kind::Hex,
        Kind::Token,
        Kind::Slug,
        Kind::String,
        Kind::Empty,
    ];

    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// A value of this kind in a path is a variable as soon as it is seen.
    pub fn is_id(self) -> bool {
        matches!(self, Kind::Integer | Kind::Number | Kind::Uuid | Kind::Email | Kind::Ip | Kind::Hex | Kind::Token)
    }

    /// Looks variable, but fixed values of this shape exist (`/2010-04-01/`, `/v2-beta-1`):
    /// a variable once a second distinct value is seen at the same place.
    pub fn is_soft(self) -> bool {
        matches!(self, Kind::Date | Kind::DateTime | Kind::Slug)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Integer => "integer",
            Kind::Number => "number",
            Kind::Boolean => "boolean",
            Kind::Uuid => "uuid",
            Kind::Date => "date",
            Kind::DateTime => "date-time",
            Kind::Email => "email",
            Kind::Ip => "ip",
            Kind::Hex => "hex",
            Kind::Token => "token",
            Kind::Slug => "slug",
            Kind::String => "string",
            Kind::Empty => "empty",
        }
    }

    /// JSON Schema type and format for OpenAPI export.
    pub fn openapi(self) -> (&'static str, Option<&'static str>) {
        match self {
            Kind::Integer => ("integer", None),
            Kind::Number => ("number", None),
            Kind::Boolean => ("boolean", None),
            Kind::Uuid => ("string", Some("uuid")),
            Kind::Date => ("string", Some("date")),
            Kind::DateTime => ("string", Some("date-time")),
            Kind::Email => ("string", Some("email")),
            Kind::Ip => ("string", Some("ip")),
            _ => ("string", None),
        }
    }
}

/// A set of kinds, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kinds(pub u16);

impl Kinds {
    pub fn add(&mut self, k: Kind) {
        self.0 |= k.bit();
    }
    pub fn union(&mut self, o: Kinds) {
        self.0 |= o.0;
    }
    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(move |k| self.0 & k.bit() != 0)
    }
    /// The most specific kind covering every value seen (integer ⊂ number ⊂ string).
    pub fn summary(self) -> Kind {
        let ks: Vec<Kind> = self.iter().filter(|k| *k != Kind::Empty).collect();
        match ks.as_slice() {
            [] => Kind::String,
            [k] => *k,
            _ if ks.iter().all(|k| matches!(k, Kind::Integer | Kind::Number)) => Kind::Number,
            _ if ks.iter().all(|k| matches!(k, Kind::Date | Kind::DateTime)) => Kind::DateTime,
            _ => Kind::String,
        }
    }
}

fn is_hex(s: &[u8]) -> bool {
    s.iter().all(u8::is_ascii_hexdigit)
}

fn digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

fn is_date(s: &[u8]) -> bool {
    s.len() == 10 && digits(&s[..4]) && s[4] == b'-' && digits(&s[5..7]) && s[7] == b'-' && digits(&s[8..])
}

fn is_uuid(s: &[u8]) -> bool {
    s.len() == 36
        && s.iter()
            .enumerate()
            .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_hexdigit() })
}

fn is_ipv4(s: &[u8]) -> bool {
    let parts: Vec<&[u8]> = s.split(|&c| c == b'.').collect();
    parts.len() == 4 && parts.iter().all(|p| digits(p) && p.len() <= 3)
}

/// Classify one value (already percent-decoded where it matters: `%40` counts as `@`).
pub fn classify(v: &str) -> Kind {
    let s = v.as_bytes();
    if s.is_empty() {
        return Kind::Empty;
    }
    if digits(s) || (s[0] == b'-' && digits(&s[1..])) {
        return Kind::Integer;
    }
    if matches!(v, "true" | "false") {
        return Kind::Boolean;
    }
    if is_uuid(s) {
        return Kind::Uuid;
    }
    if is_date(s) {
        return Kind::Date;
    }
    if s.len() > 10 && is_date(&s[..10]) && matches!(s[10], b'T' | b't' | b' ') {
        return Kind::DateTime;
    }
    if is_ipv4(s) {
        return Kind::Ip;
    }
    let num = s.iter().filter(|c| c.is_ascii_digit()).count();
    if num > 0 && s.iter().filter(|&&c| c == b'.').count() == 1 && s.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
        return Kind::Number;
    }
    if let Some(at) = v.find('@').or_else(|| v.find("%40")) {
        let domain = &v[at..];
        if at > 0 && domain.contains('.') && !v.contains(' ') {
            return Kind::Email;
        }
    }
    let alpha = s.iter().filter(|c| c.is_ascii_alphabetic()).count();
    if s.len() >= 8 && is_hex(s) && num > 0 {
        return Kind::Hex;
    }
    let tokenish = s.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'=' | b'.' | b'~' | b'+'));
    if tokenish && s.len() >= 12 && num > 0 && alpha > 0 && !name_with_number(v) {
        // Mixed letters and digits, long: a key, an opaque id, base64.
        let hyphens = s.iter().filter(|&&c| c == b'-').count();
        if hyphens < 2 || s.len() >= 24 {
            return Kind::Token;
        }
    }
    if tokenish && s.len() >= 20 && alpha > 0 && !s.iter().any(|c| matches!(c, b'-' | b'_' | b'.')) {
        let upper = s.iter().filter(|c| c.is_ascii_uppercase()).count();
        let lower = s.iter().filter(|c| c.is_ascii_lowercase()).count();
        // Long unbroken mixed-case run: base62 rather than a camelCase word.
        if upper * 4 > s.len() && lower * 4 > s.len() {
            return Kind::Token;
        }
    }
    // `hello-world-42`, `ubuntu-22-04-x64`; not `users-28-day` (API words around a number).
    if num > 0 && alpha > 0 && s.contains(&b'-') && !is_vocabulary(v) {
        return Kind::Slug;
    }
    Kind::String
}

/// Split `name.ext` for the extensions APIs put on resource paths (`{Sid}.json`).
pub fn split_ext(seg: &str) -> (&str, &str) {
    const EXTS: &[&str] = &[
        ".json", ".xml", ".csv", ".txt", ".html", ".htm", ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".yaml",
        ".yml", ".zip", ".gz", ".tar", ".mp3", ".mp4", ".wav", ".js", ".css",
    ];
    for e in EXTS {
        if seg.len() > e.len() && seg[seg.len() - e.len()..].eq_ignore_ascii_case(e) {
            return seg.split_at(seg.len() - e.len());
        }
    }
    (seg, "")
}

/// Words of API vocabulary: resource names, actions, qualifiers. A literal segment made of
/// these words only (`createWithList`, `check-runs`, `me`) stays a literal whatever the
/// cardinality of its siblings. Written for apiwatch; plural `s` forms are handled in code.
const WORDS: &str = "\
a about abuse accept access account accounts act action activate active activity add addon address admin \
advanced advisory affiliate agent aggregate ai alert alias all allow allowed allowlist analytics and \
announcement answer api app append application apply approval approve archive area article artifact ask \
asset assign assignee assignment attach attachment attempt attribute audience audit auth authenticate author \
authorization authorize auto automated available avatar backup badge balance ban bank base batch beta bill \
billing binding blob block blocked blocklist board body book bookmark boot bot bounce branch brand broadcast \
browse bucket budget build bulk bundle by cache calendar call callback campaign cancel capability card cart \
cascade catalog category cdn certificate change channel charge chat check checkout child claim class clean \
clear client clone close cluster code collaboration collaborator collection color column comment commit \
community company compare complete compute config configuration confirm connect connection consent contact \
container content context contract contributor control conversation convert cookie copy core count counter \
country coupon course create credential credit csv currency current custom customer daily dashboard data \
database date day deactivate debug default delete delivery dependency deploy deployment deposit describe \
description design destination detail device diff digest direct directory disable discount discussion disk \
dispatch display dns doc document domain done download draft drive droplet dump edit editor effective email \
embed emoji enable endpoint enterprise entitlement entity entry environment error estimate event evidence \
exchange execute execution exists export extension external extract factor fail failure favorite feature \
feed feedback fetch field file filter find firewall fix flag flow folder follow follower following for fork \
form forward free friend from full fund gateway generate get gist git global goal grant graph group guest \
guide hash head header health help history hold home hook host hourly id identity image import inbox \
incident index info information init insight install installation instance integration intent interaction \
internal invitation invite invocation invoice ip issue item job join key keyword kind label language last \
latest launch layout lead learn ledger level library license like limit line link list listen live load \
local lock log login logout lookup mail manage manifest map mapping mark market marketplace match me media \
meeting member membership memo menu merge message meta metadata method metric migration milestone minute \
mode model moderation module monitor month monthly move multi my name namespace network new news next node \
note notification number oauth object offer office on online open operation option order org organization \
origin out outbox output overview owner package page parent part participant partner password patch path \
pause pay payment payout pending permission person phone photo pin ping place plan platform play player \
playlist plugin point policy poll pool popular port post preference premium preview price pricing primary \
print private process product profile program project promotion property protection provider public publish \
pull purchase push query question queue quota rate reaction read readme reason receipt receive recent \
recipient record recording recover redirect reference refresh refund region register registry reject release \
reload remove rename render replace reply repo report repository request require reserve reset resolve \
resource response restore restriction result resume retention retry return review revoke role room root rule \
run runner sale sample save scan schedule schema scope score search season secret section security seed \
segment select self send sender sequence server service session set setting settings setup share shipment \
shipping shop show sign signup site size skill skip snapshot social source space spam spec sso stack stage \
star start stat state statement static statistic stats status step stock stop storage store stream subject \
submission submit subscribe subscriber subscription suggest summary support suspend sync system tab table \
tag target task tax taxonomy team template tenant term terminate test text theme thread ticket time timeline \
timezone to token tool top topic total track tracking trade traffic transaction transcript transfer \
translate transport trash tree trend trial trigger trust type unblock undo unfollow unread unsubscribe \
update upgrade upload usage user username utility v1 v2 v3 v4 v5 validate validation value variable vendor \
verification verify version video view visibility voice volume vote vulnerability wallet watch watcher \
watermark web webhook website week weekly welcome whitelist whoami widget wiki with word work workflow \
workspace write year zip zone";

fn word_set() -> &'static std::collections::HashSet<&'static str> {
    static SET: std::sync::OnceLock<std::collections::HashSet<&'static str>> = std::sync::OnceLock::new();
    SET.get_or_init(|| WORDS.split_whitespace().collect())
}

/// Letter pairs found in the vocabulary (`[a][b]` set when `ab` occurs in a word): English
/// spelling as far as API names go.
fn bigrams() -> &'static [[bool; 26]; 26] {
    static SET: std::sync::OnceLock<[[bool; 26]; 26]> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        let mut t = [[false; 26]; 26];
        for w in WORDS.split_whitespace() {
            for p in w.as_bytes().windows(2) {
                if p[0].is_ascii_lowercase() && p[1].is_ascii_lowercase() {
                    t[(p[0] - b'a') as usize][(p[1] - b'a') as usize] = true;
                }
            }
        }
        t
    })
}

/// Spelled like a word: known, or a vowel and every letter pair one that the vocabulary
/// uses (one unknown pair allowed in long words). Random letters fail this quickly: about
/// half of all pairs never occur in the vocabulary.
/// A name with a short number in it (`reserved_ipv6`, `repositoriesV2`, `oauth2_tokens`):
/// at most two runs of at most two digits, and words of five letters or more spelled like
/// words, one of them
/// known. Opaque tokens have more digits, or letters that spell nothing.
fn name_with_number(v: &str) -> bool {
    let b = v.as_bytes();
    let runs: Vec<usize> = b.split(|c| !c.is_ascii_digit()).map(<[u8]>::len).filter(|&n| n > 0).collect();
    if runs.is_empty() || runs.len() > 2 || runs.iter().any(|&n| n > 2) {
        return false;
    }
    let mut words = Vec::new();
    for part in v.split(|c: char| !c.is_ascii_alphabetic()) {
        let mut start = 0;
        let pb = part.as_bytes();
        for i in 1..pb.len() {
            if pb[i].is_ascii_uppercase() && pb[i - 1].is_ascii_lowercase() {
                words.push(part[start..i].to_ascii_lowercase());
                start = i;
            }
        }
        if start < part.len() {
            words.push(part[start..].to_ascii_lowercase());
        }
    }
    // Short words are often abbreviations (`ipv`, `ec`): only the longer ones must spell.
    let long: Vec<&String> = words.iter().filter(|w| w.len() >= 5).collect();
    !long.is_empty() && long.iter().all(|w| wordlike(w)) && long.iter().any(|w| known_word(w))
}

fn wordlike(w: &str) -> bool {
    if known_word(w) {
        return true;
    }
    let b = w.as_bytes();
    if !b.iter().any(|c| b"aeiouy".contains(c)) {
        return false;
    }
    let t = bigrams();
    let unknown = b.windows(2).filter(|p| !t[(p[0] - b'a') as usize][(p[1] - b'a') as usize]).count();
    unknown == 0 || (unknown == 1 && b.len() >= 7)
}

fn known_word(w: &str) -> bool {
    let set = word_set();
    let lower = w.to_ascii_lowercase();
    let l = lower.as_str();
    set.contains(l)
        || l.strip_suffix('s').is_some_and(|x| set.contains(x))
        || l.strip_suffix("es").is_some_and(|x| set.contains(x))
        || l.strip_suffix("ies").is_some_and(|x| set.contains(format!("{x}y").as_str()))
        || l.strip_suffix("ed").is_some_and(|x| set.contains(x) || set.contains(format!("{x}e").as_str()))
        || l.strip_suffix("ing").is_some_and(|x| set.contains(x) || set.contains(format!("{x}e").as_str()))
}

/// Common top-level domains: `example.com` in a path is a value (a domain name), not a
/// method name.
const TLDS: &[&str] =
    &["com", "org", "net", "io", "dev", "co", "app", "ai", "edu", "gov", "us", "uk", "de", "fr", "local", "internal"];

/// A dotted identifier of code, as RPC-style APIs name their methods (`chat.postMessage`,
/// `dnd.info`, `admin.apps.approve`): alphabetic parts, the last one camelCase or an API
/// word. Not a domain name (`example.com`) nor a file (`report.json`).
fn is_method_name(seg: &str) -> bool {
    let parts: Vec<&str> = seg.split('.').collect();
    let last = parts[parts.len() - 1];
    parts.len() >= 2
        && split_ext(seg).1.is_empty()
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphabetic()))
        && !TLDS.contains(&last)
        && (seg.bytes().any(|c| c.is_ascii_uppercase()) || known_word(last))
}

/// A name written the way code names things: `snake_case` words (`legal_hold_policies`,
/// `file_version_retentions`) or `camelCase` humps (`boxSkillsCards`), letters only, each
/// word of 2 letters or more (3 for humps, so that random base62 is not taken for one).
/// Values are rarely spelled so: slugs join words with hyphens, ids carry digits. Every
/// word must be spelled like one (`as_jfwcwiicp` is not a name). A value such as
/// `john_doe` or `oa_citations` is the price: it stays a literal until it is pinned.
fn is_identifier(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.len() > 64 || b.is_empty() || !b[0].is_ascii_lowercase() {
        return false;
    }
    if seg.contains('_') {
        let parts: Vec<&str> = seg.split('_').collect();
        return (2..=6).contains(&parts.len())
            && parts.iter().all(|p| p.len() >= 2 && p.bytes().all(|c| c.is_ascii_lowercase()) && wordlike(p));
    }
    if !b.iter().all(u8::is_ascii_alphabetic) {
        return false;
    }
    // lower{3,}(Upper lower{2,}){1,4}, each hump spelled like a word.
    let mut starts = vec![0];
    starts.extend((1..b.len()).filter(|&i| b[i].is_ascii_uppercase()));
    starts.push(b.len());
    (3..=6).contains(&starts.len())
        && starts.windows(2).all(|w| w[1] - w[0] >= 3 && wordlike(&seg[w[0]..w[1]].to_ascii_lowercase()))
}

/// What follows the `v` of an API version: digits, then stage words each with an optional
/// number (`1`, `2beta1`, `1p1beta1`, `3alpha`, `2rc1`).
fn api_version(b: &[u8]) -> bool {
    const STAGES: &[&[u8]] = &[b"alpha", b"beta", b"rc", b"p", b"preview", b"dev"];
    let mut i = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if i == 0 {
        return false;
    }
    while i < b.len() {
        let Some(stage) = STAGES.iter().filter(|s| b[i..].starts_with(s)).max_by_key(|s| s.len()) else {
            return false;
        };
        i += stage.len();
        i += b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    }
    true
}

/// Every word of the segment (split at `-`, `_`, `.`, and camelCase humps) is API vocabulary,
/// the segment is a version (`v1`, `v2beta1`), or a dotted method name (`chat.postMessage`).
pub fn is_vocabulary(seg: &str) -> bool {
    if is_method_name(seg) {
        return true;
    }
    let b = seg.as_bytes();
    // v1, v2, v1beta1, v2alpha, v1p1beta1: versions of an API (not release tags such as
    // v1.2.3, nor ids that happen to start with v and a digit, such as v5k1728c).
    if b.len() >= 2 && (b[0] == b'v' || b[0] == b'V') && b[1].is_ascii_digit() && b.len() <= 12 && api_version(&b[1..])
    {
        return true;
    }
    // Dotted numbers (`v1.2.3`, `1.0`) are versions of something, not API words.
    if seg.contains('.') && seg.split('.').skip(1).any(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit())) {
        return false;
    }
    if is_identifier(seg) {
        return true;
    }
    let mut words = Vec::new();
    for part in seg.split(['-', '_', '.']) {
        let mut start = 0;
        let pb = part.as_bytes();
        for i in 1..pb.len() {
            if pb[i].is_ascii_uppercase() && pb[i - 1].is_ascii_lowercase() {
                words.push(&part[start..i]);
                start = i;
            }
        }
        if start < part.len() {
            words.push(&part[start..]);
        }
    }
    // Numbers between words (`users-28-day`) do not make a value.
    words.retain(|w| !w.bytes().all(|c| c.is_ascii_digit()));
    !words.is_empty() && words.len() <= 6 && words.iter().all(|w| known_word(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_values() {
        for (v, k) in [
            ("123", Kind::Integer),
            ("1.5", Kind::Number),
            ("true", Kind::Boolean),
            ("3f2504e0-4f89-11d3-9a0c-0305e82c3301", Kind::Uuid),
            ("2024-05-01", Kind::Date),
            ("2024-05-01T10:00:00Z", Kind::DateTime),
            ("a.b@example.com", Kind::Email),
            ("jo%40example.org", Kind::Email),
            ("10.1.2.3", Kind::Ip),
            ("9f8e7c6d", Kind::Hex),
            ("AC0123456789abcdef0123456789abcdef", Kind::Hex),
            ("SMab12cd34ef56ab78cd90ef12ab34cd56", Kind::Token),
            ("4aawyAB9vmqN3uQ7FjRGTy", Kind::Token),
            ("dXNlcjpwYXNzd29yZA==", Kind::Token),
            ("ubuntu-22-04-x64", Kind::Slug),
            ("users-28-day", Kind::String),
            ("users", Kind::String),
            ("createWithList", Kind::String),
            ("v1", Kind::String),
            ("deadbeef", Kind::String),
            ("", Kind::Empty),
        ] {
            assert_eq!(classify(v), k, "{v}");
        }
    }

    #[test]
    fn names_with_a_number_are_not_tokens() {
        for v in ["reserved_ipv6", "repositoriesV2", "oauth2_tokens"] {
            assert_eq!(classify(v), Kind::String, "{v}");
        }
        for v in ["AKIA1234567890ABCDEF", "a1b2c3d4e5f6", "xk29fjq81zzp", "SMab12cd34ef56ab78cd90ef12ab34cd56"] {
            assert_ne!(classify(v), Kind::String, "{v}");
        }
    }

    #[test]
    fn vocabulary_words() {
        for w in ["users", "me", "createWithList", "check-runs", "v2", "v1beta1", "categories", "login", "pulls"] {
            assert!(is_vocabulary(w), "{w}");
        }
        for w in ["v1p1beta1", "v2rc1", "V3", "v10alpha"] {
            assert!(is_vocabulary(w), "{w}");
        }
        // Ids that start like a version are not one.
        for w in ["v5k1728c", "v1x", "v"] {
            assert!(!is_vocabulary(w), "{w}");
        }
        for w in ["chat.postMessage", "admin.apps.restricted.list", "dnd.info"] {
            assert!(is_vocabulary(w), "{w}");
        }
        // Names spelled as code: snake_case and camelCase identifiers.
        for w in ["legal_hold_policies", "shield_information_barrier_segment_members", "boxSkillsCards", "ai_agents"] {
            assert!(is_vocabulary(w), "{w}");
        }
        for w in ["aBcDeFgH", "x_y", "Legal_hold", "qWeRtYuIoP", "zk_", "as_jfwcwiicp", "gz_zredsgwxk", "kzcQwvTrx"] {
            assert!(!is_vocabulary(w), "{w}");
        }
        for w in [
            "kavoru83",
            "octocat",
            "zqxj",
            "hello-world42",
            "v1.2.3",
            "example.com",
            "kavoru.dev",
            "zoicwyt.heb",
            "darecu.json",
        ] {
            assert!(!is_vocabulary(w), "{w}");
        }
    }

    #[test]
    fn extensions() {
        assert_eq!(split_ext("SM123.json"), ("SM123", ".json"));
        assert_eq!(split_ext("chat.postMessage"), ("chat.postMessage", ""));
    }
}
