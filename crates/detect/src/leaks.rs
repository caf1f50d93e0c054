//! What responses give away: stack traces and debug pages (in HTML, in text, or escaped
//! inside a JSON string), and headers that name the server software with its version.

use crate::evidence::mask_numbers;
use regex::bytes::{Regex, RegexBuilder};

/// Cheap literals one of which every leak pattern contains: bodies without any of them
/// are not searched further.
const ANCHORS: &[&str] = &[
    "Traceback",
    "Exception",
    "Error",
    "goroutine ",
    "panic:",
    "Stack trace",
    "stack trace",
    " on line ",
    "DEBUG = True",
    "Werkzeug",
    "Whitelabel",
    "Server Error in",
    "Whoops",
    ".java:",
    ".py\"",
    ".cs:line",
    ".js:",
];

enum Anchors {
    Teddy(aho_corasick::packed::Searcher),
    Regex(regex::bytes::Regex),
}

pub struct Leaks {
    /// Teddy, the packed SIMD searcher of aho-corasick (what the regex crate uses as its
    /// literal prefilter) called directly: ordinary bodies are searched 16 times faster than
    /// by an Aho-Corasick automaton over the same anchors (0.1 against 1.6 µs per
    /// kilobyte), without a regex's per-call set-up. Every response body goes through it.
    /// Where the CPU has no SIMD Teddy can use, the anchors as one regex alternation.
    anchors: Anchors,
    patterns: Vec<(&'static str, Regex)>,
}

/// A newline as it appears in a body: raw, or escaped inside a JSON string.
const NL: &str = r"(?:\r?\n|(?:\\r)?\\n)";

impl Default for Leaks {
    fn default() -> Self {
        let pats: Vec<(&'static str, String)> = vec![
            (
                "python_traceback",
                format!(r#"Traceback \(most recent call last\):{NL}\s*(?:\\t)?\s*File \\?"[^"\\]+\\?", line \d+"#),
            ),
            ("java_stack_trace", format!(r"(?:Exception|Error|Throwable)\b[^\n]{{0,300}}?{NL}\s*(?:\\t)?\s*at [\w$.<>]+\([\w$]+\.(?:java|kt|scala):\d+\)")),
            ("go_panic", r"goroutine \d+ \[running\]:|panic: .{0,200}?(?:\n|\\n)(?:\n|\\n)?goroutine \d+".to_string()),
            (
                "dotnet_stack_trace",
                r"(?:System\.[\w.]*Exception:[\s\S]{0,400}?\bat [\w.`<>]+\(.*?\)|\bat [\w.`<>]+\([^)]*\) in [^\n]{1,200}?\.cs:line \d+)".to_string(),
            ),
            (
                "php_error",
                r"(?:Fatal error|Parse error|Warning|Notice|Deprecated)(?:</b>)?:\s[\s\S]{1,300}? in (?:<b>)?[\w/\\.:-]+\.php(?:</b>)? on line (?:<b>)?\d+|Stack trace:(?:\r?\n|\\n)#0 ".to_string(),
            ),
            ("node_stack_trace", format!(r"\b(?:Error|TypeError|ReferenceError|SyntaxError|RangeError)\b[^\n]{{0,300}}?{NL}\s*at [^\n]{{0,120}}?\((?:/|node:)[\w/.@-]+:\d+:\d+\)")),
            ("django_debug", r"You're seeing this error because you have <code>DEBUG = True</code>".to_string()),
            ("werkzeug_debugger", r"Werkzeug [Dd]ebugger|The debugger caught an exception in your WSGI application".to_string()),
            ("spring_whitelabel", r"Whitelabel Error Page".to_string()),
            ("aspnet_yellow_screen", r"Server Error in '[^']*' Application".to_string()),
            ("laravel_whoops", r"Whoops(?:!| looks like something went wrong)".to_string()),
        ];
        Leaks {
            anchors: match aho_corasick::packed::Searcher::new(ANCHORS.iter()) {
                Some(teddy) => Anchors::Teddy(teddy),
                None => Anchors::Regex(
                    regex::bytes::Regex::new(&ANCHORS.iter().map(|a| regex::escape(a)).collect::<Vec<_>>().join("|"))
                        .expect("valid anchors"),
                ),
            },
            // ASCII classes (bytes, no Unicode tables): cheaper to build, and traces are ASCII.
            patterns: pats
                .into_iter()
                .map(|(n, p)| (n, RegexBuilder::new(&p).unicode(false).build().expect("valid leak pattern")))
                .collect(),
        }
    }
}

impl Leaks {
    /// The first leak in a response body: (its kind, a masked excerpt).
    pub fn body(&self, body: &[u8]) -> Option<(&'static str, String)> {
        let anchored = !body.is_empty()
            && match &self.anchors {
                Anchors::Teddy(teddy) => teddy.find(body).is_some(),
                Anchors::Regex(re) => re.is_match(body),
            };
        if !anchored {
            return None;
        }
        for (name, re) in &self.patterns {
            if let Some(m) = re.find(body) {
                return Some((name, mask_numbers(String::from_utf8_lossy(m.as_bytes()).trim(), 160)));
            }
        }
        None
    }
}

/// A response header that names software with a version: `Server: nginx/1.22.1`,
/// `X-Powered-By: PHP/8.1.2`, `X-AspNet-Version: 4.0.30319`. Names without a version
/// (`Server: nginx`) say little and are not flagged.
pub fn version_header(name: &[u8], value: &[u8]) -> bool {
    let versioned = || value.windows(2).any(|w| (w[0] == b'/' || w[0] == b' ') && w[1].is_ascii_digit());
    if name.eq_ignore_ascii_case(b"x-aspnet-version") || name.eq_ignore_ascii_case(b"x-aspnetmvc-version") {
        return true;
    }
    (name.eq_ignore_ascii_case(b"server") || name.eq_ignore_ascii_case(b"x-powered-by")) && versioned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_traces_of_each_runtime_are_found_and_ordinary_bodies_are_not() {
        let l = Leaks::default();
        let found = |b: &str| l.body(b.as_bytes()).map(|(k, _)| k);
        assert_eq!(
            found("Traceback (most recent call last):\n  File \"/srv/app.py\", line 12, in handler\nKeyError: 'x'"),
            Some("python_traceback")
        );
        // The same, escaped inside a JSON error body.
        assert_eq!(
            found(r#"{"error":"Traceback (most recent call last):\n  File \"/srv/app.py\", line 12, in h\n"}"#),
            Some("python_traceback")
        );
        assert_eq!(
            found("java.lang.NullPointerException: x\n\tat com.acme.api.UserController.get(UserController.java:42)\n"),
            Some("java_stack_trace")
        );
        assert_eq!(
            found(r#"{"trace":"java.lang.IllegalStateException: bad\n\tat org.acme.Svc.run(Svc.java:7)"}"#),
            Some("java_stack_trace")
        );
        assert_eq!(
            found("panic: runtime error: index out of range\n\ngoroutine 1 [running]:\nmain.main()"),
            Some("go_panic")
        );
        assert_eq!(
            found("System.NullReferenceException: Object reference not set\n   at Api.Controllers.Users.Get(Int32 id) in C:\\src\\Users.cs:line 31"),
            Some("dotnet_stack_trace")
        );
        assert_eq!(
            found("<b>Fatal error</b>:  Uncaught Error: Call to undefined function x() in <b>/var/www/html/index.php</b> on line <b>3</b>"),
            Some("php_error")
        );
        assert_eq!(
            found("TypeError: Cannot read properties of undefined (reading 'id')\n    at getUser (/app/src/users.js:14:20)"),
            Some("node_stack_trace")
        );
        assert_eq!(found("<h1>Whitelabel Error Page</h1>"), Some("spring_whitelabel"));
        for benign in [
            r#"{"error":"not found","code":404}"#,
            r#"{"message":"Error: invalid email address"}"#,
            "Exception handling in Java is described in chapter 7.",
            r#"{"items":[{"name":"stack trace viewer","at":"home"}]}"#,
        ] {
            assert_eq!(found(benign), None, "{benign}");
        }
    }

    #[test]
    fn version_headers() {
        assert!(version_header(b"Server", b"nginx/1.22.1"));
        assert!(version_header(b"server", b"Apache/2.4.57 (Debian)"));
        assert!(version_header(b"X-Powered-By", b"PHP/8.1.2"));
        assert!(version_header(b"X-AspNet-Version", b"4.0.30319"));
        assert!(version_header(b"Server", b"SimpleHTTP/0.6 Python/3.11.2"));
        assert!(!version_header(b"Server", b"nginx"));
        assert!(!version_header(b"X-Powered-By", b"Express"));
        assert!(!version_header(b"Content-Type", b"text/plain; v/1"));
    }
}
