//! Evidence as it leaves the agent: enough for a person to see what the attack looked like,
//! never the data around it. An attack payload is mostly syntax and keywords; the words and
//! numbers it carries may be someone's data (an e-mail address, a name, a card number).
//! So evidence keeps punctuation, blanks, short numbers and a vocabulary of attack words,
//! and masks every other run of letters or digits.

/// Words an attack is made of, kept in evidence (lower case).
const KEEP: &[&str] = &[
    "select",
    "union",
    "all",
    "from",
    "where",
    "and",
    "or",
    "not",
    "null",
    "sleep",
    "benchmark",
    "waitfor",
    "delay",
    "pg_sleep",
    "order",
    "by",
    "group",
    "having",
    "insert",
    "into",
    "update",
    "delete",
    "drop",
    "table",
    "exec",
    "execute",
    "xp_cmdshell",
    "information_schema",
    "tables",
    "columns",
    "concat",
    "char",
    "chr",
    "ascii",
    "substring",
    "version",
    "database",
    "user",
    "case",
    "when",
    "then",
    "else",
    "end",
    "if",
    "like",
    "limit",
    "offset",
    "cast",
    "convert",
    "count",
    "outfile",
    "load_file",
    "extractvalue",
    "updatexml",
    "script",
    "alert",
    "prompt",
    "confirm",
    "eval",
    "onerror",
    "onload",
    "onmouseover",
    "onfocus",
    "img",
    "svg",
    "iframe",
    "src",
    "href",
    "javascript",
    "vbscript",
    "document",
    "cookie",
    "window",
    "location",
    "etc",
    "passwd",
    "shadow",
    "hosts",
    "proc",
    "self",
    "environ",
    "win",
    "ini",
    "system32",
    "boot",
    "cat",
    "id",
    "whoami",
    "uname",
    "ls",
    "wget",
    "curl",
    "nc",
    "bash",
    "sh",
    "ping",
    "echo",
    "python",
    "perl",
    "php",
    "powershell",
    "cmd",
    "bin",
    "ifs",
    "jndi",
    "ldap",
    "ldaps",
    "rmi",
    "dns",
    "iiop",
    "lower",
    "upper",
    "env",
    "sys",
    "http",
    "https",
    "file",
    "gopher",
    "dict",
    "ftp",
    "tftp",
    "jar",
    "localhost",
    "metadata",
    "internal",
    "latest",
    "meta",
    "data",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "regex",
    "exists",
    "return",
    "true",
    "false",
    "this",
    "entity",
    "doctype",
    "system",
    "public",
    "xml",
    "class",
    "mro",
    "subclasses",
    "globals",
    "builtins",
    "import",
    "config",
    "items",
    "objectclass",
    "uid",
    "cn",
    "mail",
    "web",
    "inf",
];

/// `value` made safe to ship, cut to about `max` bytes (on a character boundary).
pub fn redact(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max) + 3);
    let mut rest = value;
    while let Some(c) = rest.chars().next() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        if c.is_alphanumeric() || c == '_' {
            let end = rest.find(|ch: char| !(ch.is_alphanumeric() || ch == '_')).unwrap_or(rest.len());
            let word = &rest[..end];
            let keep = (word.len() <= 3 && word.bytes().all(|b| b.is_ascii_digit()))
                || (word.len() <= 2 && word.is_ascii())
                || KEEP.iter().any(|k| k.eq_ignore_ascii_case(word));
            if keep {
                out.push_str(word);
            } else {
                // One mark per character, at most eight: the shape, not the value.
                out.extend(std::iter::repeat_n('*', word.chars().count().min(8)));
            }
            rest = &rest[end..];
        } else {
            if c.is_control() {
                out.push(' ');
            } else {
                out.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// A field, parameter or header name as shown: names are the API's vocabulary and stay,
/// unless they look like data (an address, a long number, an odd length or alphabet).
pub fn name(n: &str) -> String {
    let mut digits = 0;
    let mut longest = 0;
    for b in n.bytes() {
        digits = if b.is_ascii_digit() { digits + 1 } else { 0 };
        longest = longest.max(digits);
    }
    let shaped = !n.is_empty()
        && n.len() <= 48
        && longest <= 4
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']' | b'$'));
    if shaped {
        n.to_string()
    } else {
        redact(n, 48)
    }
}

/// Text from a response (a stack trace line, a header) with long digit runs masked: no
/// account or card number rides along with a file name and line.
pub fn mask_numbers(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 3);
    let mut digits = 0usize;
    for c in text.chars() {
        if out.len() >= max {
            out.push('…');
            break;
        }
        if c.is_ascii_digit() {
            digits += 1;
        } else {
            digits = 0;
        }
        out.push(if c.is_control() {
            ' '
        } else if digits > 5 {
            '*'
        } else {
            c
        });
    }
    // A run longer than five digits is masked from its sixth: mask its first five too.
    let bytes: Vec<char> = out.chars().collect();
    let mut fixed = String::with_capacity(out.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let mut j = i;
            while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == '*') {
                j += 1;
            }
            let masked = bytes[i..j].contains(&'*');
            for &ch in &bytes[i..j] {
                fixed.push(if masked { '*' } else { ch });
            }
            i = j;
        } else {
            fixed.push(bytes[i]);
            i += 1;
        }
    }
    fixed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_syntax_stays_and_data_goes() {
        assert_eq!(redact("' or 1=1-- ", 80), "' or 1=1-- ");
        assert_eq!(redact("1 UNION SELECT password FROM users", 80), "1 UNION SELECT ******** FROM *****");
        assert_eq!(redact("john.smith@example.com' AND sleep(5)#", 80), "****.*****@*******.***' AND sleep(5)#");
        assert_eq!(redact("<script>alert(document.cookie)</script>", 80), "<script>alert(document.cookie)</script>");
        assert_eq!(redact("../../../../etc/passwd", 80), "../../../../etc/passwd");
        assert_eq!(redact("http://169.254.169.254/latest/meta-data/", 80), "http://169.254.169.254/latest/meta-data/");
        // A card number in a payload is masked.
        assert!(!redact("4111111111111111' or '1'='1", 80).contains("4111"));
        assert_eq!(redact("abcdefghijkl and more", 5), "********…");
    }

    #[test]
    fn long_numbers_are_masked_in_response_text() {
        assert_eq!(mask_numbers("at Foo.bar(Foo.java:42)", 80), "at Foo.bar(Foo.java:42)");
        assert_eq!(mask_numbers("card 4111111111111111 declined", 80), "card **************** declined");
    }
}
