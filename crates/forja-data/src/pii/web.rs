//! The recognizers of network identifiers: e-mail addresses (grown both ways
//! from each `@`, Unicode local parts and IDN domains allowed), URLs
//! (`http(s)://` and `www.`, trailing punctuation stripped) and IPv6
//! (candidates validated by `std::net`).

use std::net::Ipv6Addr;

use super::text::{char_at, char_before, is_word_char};
use super::{EntityKind, Finding};

/// Score of a well-formed e-mail address.
const EMAIL_SCORE: f32 = 1.0;
/// Score of a URL (personal only through what it contains).
const URL_SCORE: f32 = 0.6;
/// Score of a valid IPv6 address.
const IPV6_SCORE: f32 = 0.7;

fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '.' | '_' | '%' | '+' | '-')
        || (!c.is_ascii() && c.is_alphanumeric())
}

fn is_domain_char(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '.'
}

/// The e-mail address around the `@` at byte `at`, as a byte range.
fn email_at(text: &str, at: usize) -> Option<(usize, usize)> {
    let head = text.get(..at)?;
    let mut start = at;
    for (i, c) in head.char_indices().rev() {
        if !is_local_char(c) {
            break;
        }
        start = i;
    }
    while text[start..at].starts_with('.') {
        start += 1;
    }
    let local = &text[start..at];
    if local.is_empty() || local.len() > 64 || local.ends_with('.') || local.contains("..") {
        return None;
    }
    let tail = text.get(at + 1..)?;
    let mut len = tail.find(|c: char| !is_domain_char(c)).unwrap_or(tail.len());
    len = tail[..len].trim_end_matches(['.', '-']).len();
    let domain = &tail[..len];
    if domain.len() > 253 {
        return None;
    }
    let mut labels = 0;
    for label in domain.split('.') {
        let n = label.chars().count();
        if n == 0 || n > 63 || label.starts_with('-') || label.ends_with('-') {
            return None;
        }
        labels += 1;
    }
    let tld = domain.rsplit('.').next().unwrap_or("");
    let tld_ok = tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic)
        || tld.len() > 4 && tld.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--"));
    if labels < 2 || !tld_ok {
        return None;
    }
    Some((start, at + 1 + len))
}

/// Appends the e-mail addresses in `text` to `out`.
pub(crate) fn emails(text: &str, out: &mut Vec<Finding>) {
    let mut from = 0;
    while let Some(k) = text.get(from..).and_then(|t| t.find('@')) {
        let at = from + k;
        from = at + 1;
        if let Some((start, end)) = email_at(text, at) {
            out.push(Finding { kind: EntityKind::EmailAddress, start, end, score: EMAIL_SCORE });
            from = end.max(from);
        }
    }
}

/// Whether the domain of an e-mail (`user@domain`) is reserved for examples
/// (RFC 2606 / 6761): `example.com/.org/.net` and their subdomains, and the
/// `.example`, `.invalid`, `.test`, `.localhost` TLDs.
pub(crate) fn is_reserved_email(email: &str) -> bool {
    let domain = email.rsplit('@').next().unwrap_or("").to_ascii_lowercase();
    let tld = domain.rsplit('.').next().unwrap_or("");
    if matches!(tld, "example" | "invalid" | "test" | "localhost") {
        return true;
    }
    ["example.com", "example.org", "example.net"]
        .iter()
        .any(|r| domain == *r || domain.strip_suffix(r).is_some_and(|p| p.ends_with('.')))
}

fn url_stop(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '<' | '>' | '"' | '`' | '\u{201c}' | '\u{201d}' | '«' | '»' | '\u{2018}' | '\u{2019}'
        )
}

/// The end of the URL starting at `start`: up to the first space or quote,
/// without trailing punctuation or an unbalanced closing bracket.
fn url_end(text: &str, start: usize) -> usize {
    let rest = &text[start..];
    let mut s = &rest[..rest.find(url_stop).unwrap_or(rest.len())];
    loop {
        let trimmed = s.trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '*', '¡', '¿']);
        let unbalanced = |open: char, close: char| {
            trimmed.ends_with(close)
                && trimmed.matches(close).count() > trimmed.matches(open).count()
        };
        let trimmed = if unbalanced('(', ')') || unbalanced('[', ']') || unbalanced('{', '}') {
            &trimmed[..trimmed.len() - 1]
        } else {
            trimmed
        };
        if trimmed.len() == s.len() {
            break;
        }
        s = trimmed;
    }
    start + s.len()
}

fn starts_with_ci(b: &[u8], prefix: &[u8]) -> bool {
    b.len() >= prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Appends the URLs in `text` to `out`.
pub(crate) fn urls(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !matches!(b[i], b'h' | b'H' | b'w' | b'W') {
            i += 1;
            continue;
        }
        let rest = &b[i..];
        let scheme = if starts_with_ci(rest, b"https://") {
            8
        } else if starts_with_ci(rest, b"http://") {
            7
        } else if starts_with_ci(rest, b"www.") {
            4
        } else {
            i += 1;
            continue;
        };
        let boundary = !char_before(text, i)
            .is_some_and(|c| is_word_char(c) || matches!(c, '.' | '-' | '@' | '/'));
        let end = url_end(text, i);
        let host_ok = char_at(text, i + scheme).is_some_and(|c| c.is_alphanumeric() || c == '[');
        if boundary && host_ok && end > i + scheme + 1 {
            out.push(Finding { kind: EntityKind::Url, start: i, end, score: URL_SCORE });
            i = end;
        } else {
            i += scheme;
        }
    }
}

/// Appends the IPv6 addresses in `text` to `out`: runs of hex digits, `:` and
/// `.` with at least two colons, two non-empty groups and a decimal digit,
/// that `std::net` parses.
pub(crate) fn ipv6(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let is_run = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
    let mut i = 0;
    while i < b.len() {
        if !is_run(b[i]) || b[i] == b'.' {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_run(b[i]) {
            i += 1;
        }
        let mut end = i;
        while end > start && b[end - 1] == b'.' {
            end -= 1;
        }
        let s = &text[start..end];
        let colons = s.bytes().filter(|&c| c == b':').count();
        if colons < 2 || s.len() > 45 {
            continue;
        }
        if char_before(text, start).is_some_and(is_word_char)
            || char_at(text, end).is_some_and(|c| is_word_char(c) || c == ':')
        {
            continue;
        }
        let groups = s.split(':').filter(|g| !g.is_empty()).count();
        if groups < 2 || !s.bytes().any(|c| c.is_ascii_digit()) {
            continue;
        }
        if s.parse::<Ipv6Addr>().is_ok() {
            out.push(Finding { kind: EntityKind::IpAddress, start, end, score: IPV6_SCORE });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: fn(&str, &mut Vec<Finding>), input: &str, expected: &[&str]) {
        let mut out = Vec::new();
        f(input, &mut out);
        let got: Vec<&str> = out.iter().map(|f| &input[f.start..f.end]).collect();
        assert_eq!(got, expected, "{input:?}");
    }

    #[test]
    fn email() {
        let e = emails;
        check(e, "escribe a juan.perez@gmail.com.", &["juan.perez@gmail.com"]);
        check(e, "<ana_m+tag@sub.empresa.co>", &["ana_m+tag@sub.empresa.co"]);
        check(e, "josé@correo.es", &["josé@correo.es"]);
        check(e, "info@bücher.de", &["info@bücher.de"]);
        check(e, "x@xn--bcher-kva.de", &["x@xn--bcher-kva.de"]);
        check(e, "a@b.co,c@d.org", &["a@b.co", "c@d.org"]);
        check(e, "mailto:pepe@uno.es", &["pepe@uno.es"]);
        check(e, "..a@b.com", &["a@b.com"]);
        check(e, "@b.com", &[]);
        check(e, "user@localhost", &[]);
        check(e, "user@domain.c", &[]);
        check(e, "user@-bad.com", &[]);
        check(e, "a..b@c.com", &[]);
        check(e, "user@1.2", &[]);
        check(e, "precio @ 5€", &[]);
        check(e, "@@@", &[]);
        check(e, "ü@", &[]);
    }

    #[test]
    fn reserved_domains() {
        for (email, reserved) in [
            ("user1@example.com", true),
            ("a@mail.example.org", true),
            ("a@foo.test", true),
            ("a@foo.invalid", true),
            ("a@x.example", true),
            ("a@myexample.com", false),
            ("a@example.com.co", false),
            ("a@gmail.com", false),
        ] {
            assert_eq!(is_reserved_email(email), reserved, "{email}");
        }
    }

    #[test]
    fn url() {
        let u = urls;
        check(u, "ver https://forja.dev/docs?id=3.", &["https://forja.dev/docs?id=3"]);
        check(u, "(http://a.com/x_(y))", &["http://a.com/x_(y)"]);
        check(u, "(www.ejemplo.es), luego", &["www.ejemplo.es"]);
        check(u, "HTTPS://A.COM/Ñandú", &["HTTPS://A.COM/Ñandú"]);
        check(u, "«https://x.co/a»", &["https://x.co/a"]);
        check(u, "https://user@host.com/p", &["https://user@host.com/p"]);
        check(u, "http://[2001:db8::1]:8080/", &["http://[2001:db8::1]:8080/"]);
        check(u, "awww.x.com", &[]);
        check(u, "http://", &[]);
        check(u, "https:// x", &[]);
        check(u, "www.", &[]);
    }

    #[test]
    fn ip6() {
        let v = ipv6;
        check(v, "desde 2001:db8::ff00:42:8329 ayer", &["2001:db8::ff00:42:8329"]);
        check(v, "fe80::1ff:fe23:4567:890a.", &["fe80::1ff:fe23:4567:890a"]);
        check(
            v,
            "2001:0db8:0000:0000:0000:ff00:0042:8329",
            &["2001:0db8:0000:0000:0000:ff00:0042:8329"],
        );
        check(v, "::ffff:192.0.2.128", &["::ffff:192.0.2.128"]);
        check(v, "a las 10:30:45", &[]);
        check(v, "00:1A:2B:3C:4D:5E", &[]);
        check(v, "::1", &[]);
        check(v, "add::be", &[]);
        check(v, "std::vec", &[]);
        check(v, "x2001:db8::1", &[]);
    }
}
