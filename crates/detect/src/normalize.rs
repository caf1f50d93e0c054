//! What a signature reads: a parameter value or path as an attacker meant it, whatever the
//! encoding games. Percent-decoding is applied up to three times (double and triple
//! encoding), `+` is a space in query strings, HTML character references are decoded, SQL
//! comments `/**/` between words become a space, and the text is case-folded. Paths are
//! also resolved: backslashes as slashes, `.` and `..` segments applied, repeated slashes
//! collapsed, so `/a/%2e%2e/%2e%2e/etc/passwd` reads `/etc/passwd` and its escape from the
//! root is noted.

/// Percent-decode once: `%XX` with two hex digits (others kept as they are), `+` as a
/// space when `plus` (query strings and forms).
pub fn percent_decode_once(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-decode until nothing changes (at most three rounds).
pub fn percent_decode(s: &str, plus: bool) -> String {
    let mut cur = percent_decode_once(s, plus);
    for _ in 0..2 {
        let next = percent_decode_once(&cur, false);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&amp;`, `&#NN;` and `&#xHH;` (the `;` optional for
/// numeric references, as browsers read them).
pub fn html_decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        // The `;` is optional for `&lt` and `&gt` too: browsers read them without it.
        let named = [
            ("&lt;", '<'),
            ("&gt;", '>'),
            ("&quot;", '"'),
            ("&apos;", '\''),
            ("&amp;", '&'),
            ("&lt", '<'),
            ("&gt", '>'),
        ];
        if let Some((n, c)) =
            named.iter().find(|(n, _)| rest.len() >= n.len() && rest[..n.len()].eq_ignore_ascii_case(n))
        {
            out.push(*c);
            rest = &rest[n.len()..];
            continue;
        }
        if let Some(num) = rest.strip_prefix("&#") {
            let (radix, digits) = match num.strip_prefix(['x', 'X']) {
                Some(h) => (16, h),
                None => (10, num),
            };
            let n = digits.bytes().take_while(|c| (*c as char).is_digit(radix)).count();
            if n > 0 && n <= 8 {
                if let Some(c) = u32::from_str_radix(&digits[..n], radix).ok().and_then(char::from_u32) {
                    out.push(c);
                    let used = 2 + (num.len() - digits.len()) + n;
                    rest = &rest[used..];
                    rest = rest.strip_prefix(';').unwrap_or(rest);
                    continue;
                }
            }
        }
        out.push('&');
        rest = &rest[1..];
    }
    out.push_str(rest);
    out
}

/// `\xNN` and `\uNNNN` escapes (as in JavaScript and C strings), which attackers use to hide
/// quotes and keywords.
pub fn escape_decode(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let hex = |d: &str, n: usize| -> Option<char> {
            let h = d.get(..n)?;
            if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(h, 16).ok().and_then(char::from_u32)
        };
        let (c, used) = match rest.as_bytes().get(1) {
            Some(b'x') | Some(b'X') => (hex(&rest[2..], 2), 4),
            Some(b'u') => (hex(&rest[2..], 4), 6),
            _ => (None, 0),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('\\');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A value as signatures read it: decoded (percent, HTML, `\x` escapes), SQL inline
/// comments made spaces, blanks collapsed, lower case.
pub fn value(raw: &str, plus: bool) -> String {
    let decoded = escape_decode(&html_decode(&percent_decode(raw, plus)));
    let mut out = String::with_capacity(decoded.len());
    let mut rest = decoded.as_str();
    // `UN/**/ION` is an attacker's, but `SELECT/**/1` needs the space.
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        match rest[i + 2..].find("*/") {
            Some(j) => {
                out.push(' ');
                rest = &rest[i + 2 + j + 2..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let mut folded = String::with_capacity(out.len());
    let mut blank = false;
    for c in out.chars() {
        if c.is_whitespace() {
            if !blank {
                folded.push(' ');
            }
            blank = true;
        } else {
            folded.extend(c.to_lowercase());
            blank = false;
        }
    }
    folded
}

/// A path resolved as a server would: decoded, `\` as `/`, `.` and `..` applied, `//`
/// collapsed. Returns the path and whether `..` tried to go above the root.
pub fn path(raw: &str) -> (String, bool) {
    let decoded = percent_decode(raw, false).replace('\\', "/");
    let mut segs: Vec<&str> = Vec::new();
    let mut escaped = false;
    for s in decoded.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                if segs.pop().is_none() {
                    escaped = true;
                }
            }
            s => segs.push(s),
        }
    }
    let mut p = String::from("/");
    p.push_str(&segs.join("/"));
    if decoded.ends_with('/') && p.len() > 1 {
        p.push('/');
    }
    (p, escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("%2527%20or%201%3D1", true), "' or 1=1");
        assert_eq!(percent_decode("a+b%2", true), "a b%2");
        assert_eq!(percent_decode("%zz%", false), "%zz%");
        assert_eq!(html_decode("&lt;script&gt;&#97;&#x6C;ert&#40"), "<script>alert(");
        assert_eq!(value("UN/**/ION%20%20SeLeCt", false), "un ion select");
        assert_eq!(value("SELECT/**/password", false), "select password");
        assert_eq!(value("\\x27\\x4F\\x52 1=1", false), "'or 1=1");
        assert_eq!(value("&ltscript&gt", false), "<script>");
        assert_eq!(escape_decode("a\\qb\\u0041"), "a\\qbA");
    }

    #[test]
    fn paths() {
        assert_eq!(path("/a/%2e%2e/%2e%2e/etc/passwd"), ("/etc/passwd".into(), true));
        assert_eq!(path("/static/..\\..\\windows\\win.ini"), ("/windows/win.ini".into(), true));
        assert_eq!(path("/a//b/./c/"), ("/a/b/c/".into(), false));
        assert_eq!(path("/a/b/../c"), ("/a/c".into(), false));
    }
}
