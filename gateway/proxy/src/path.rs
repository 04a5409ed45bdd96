//! Request paths, checked and put in canonical form before anything looks at them.
//!
//! A upstream may read a path differently from the gateway: nginx resolves `..` and merges
//! slashes, most servers percent-decode, Tomcat strips `;parameters` from segments, IIS takes
//! `\` for `/`. If the gateway routes and decides on one reading and the upstream serves another,
//! one permitted action opens every other (`/api/query/../declare`). So a path is refused when
//! any reasonable reading could differ from ours, and what is forwarded is the one canonical
//! form the decision saw:
//!
//! - refused: a dot segment (`.` or `..`, percent-encoded in any case, also with a
//!   `;parameter` such as `..;x`), an empty segment (`//`, which nginx merges), an encoded slash
//!   or backslash, a raw backslash, an encoded NUL or other control character, invalid
//!   percent-encoding, bytes that do not decode to UTF-8, and a percent-encoding left after
//!   one decoding (`%2561`: double encoding, for upstreams that decode twice);
//! - canonical: RFC 3986 section 6.2.2 normalisation: percent-encoded unreserved characters
//!   decoded (`%61` is `a`), every other percent-encoding in upper case. Two paths a upstream
//!   decodes alike have the same canonical form, so a route matched on the canonical form is
//!   the route of every reading.

use std::fmt;

/// Why a path was refused; the client gets 400 `invalid_path` whatever the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an absolute path (`*`, empty).
    NotAbsolute,
    /// `.` or `..` as a segment (or before a `;parameter`).
    DotSegment,
    /// `//`: an empty segment before the last.
    EmptySegment,
    /// `%2f`, `%5c` or a raw `\`.
    Separator,
    /// An encoded NUL or other control character.
    Control,
    /// `%` not followed by two hex digits, or bytes that are not UTF-8 once decoded.
    BadEncoding,
    /// An encoding that decodes to another percent-encoding (`%2561`).
    DoubleEncoding,
    /// A code point that Unicode compatibility normalisation (NFKC, Windows "best fit") turns
    /// into a dot, slash, backslash, `%` or `;` (`．．`, `／`, `＼`).
    Confusable,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "not an absolute path",
            PathError::DotSegment => "dot segment",
            PathError::EmptySegment => "empty segment",
            PathError::Separator => "encoded or backslash separator",
            PathError::Control => "control character",
            PathError::BadEncoding => "invalid percent-encoding",
            PathError::DoubleEncoding => "double percent-encoding",
            PathError::Confusable => "a code point read as a dot or separator",
        })
    }
}

impl std::error::Error for PathError {}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Check `path` (the path of a request target, without the query) and return its canonical
/// form. Allocates only when the path holds a percent-encoding.
pub fn canonical(path: &str) -> Result<std::borrow::Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Raw non-ASCII bytes are percent-encoded in the canonical form, like `%XX` of the same
    // bytes: both spellings decode alike for every upstream.
    let encoded = bytes.contains(&b'%') || !path.is_ascii();
    // One pass over the raw bytes: the canonical form, and the decoded bytes of the segment
    // being read (to look for dot segments and double encodings).
    let mut out: Vec<u8> = if encoded {
        Vec::with_capacity(bytes.len())
    } else {
        Vec::new()
    };
    let mut segment: Vec<u8> = Vec::new();
    // Byte 0 is the leading `/`; each later `/` (and the end) closes a segment.
    let mut i = 1;
    if encoded {
        out.push(b'/');
    }
    while i <= bytes.len() {
        let b = bytes.get(i).copied();
        match b {
            None | Some(b'/') => {
                check_segment(&segment, b.is_none())?;
                segment.clear();
                if encoded && b.is_some() {
                    out.push(b'/');
                }
                i += 1;
            }
            Some(b'\\') => return Err(PathError::Separator),
            Some(b'%') => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEncoding);
                };
                let d = h * 16 + l;
                match d {
                    b'/' | b'\\' => return Err(PathError::Separator),
                    0..=0x1f | 0x7f => return Err(PathError::Control),
                    _ => {}
                }
                segment.push(d);
                if is_unreserved(d) {
                    out.push(d);
                } else {
                    out.extend_from_slice(&percent_triple(d));
                }
                i += 3;
            }
            Some(b) => {
                if b < 0x20 || b == 0x7f {
                    return Err(PathError::Control);
                }
                segment.push(b);
                if b >= 0x80 {
                    out.extend_from_slice(&percent_triple(b));
                } else if encoded {
                    out.push(b);
                }
                i += 1;
            }
        }
    }
    if !encoded {
        return Ok(std::borrow::Cow::Borrowed(path));
    }
    // Every byte pushed is ASCII (unreserved, `/`, a raw path byte) or a `%XX` triple, but the
    // raw bytes came from a `&str`, so the result is UTF-8 whatever they were.
    String::from_utf8(out)
        .map(std::borrow::Cow::Owned)
        .map_err(|_| PathError::BadEncoding)
}

/// `b` as `%XX`, upper-case hex.
#[expect(
    clippy::indexing_slicing,
    reason = "a nibble (`b >> 4`, `b & 0xf`) is below 16, the length of UPPER_HEX"
)]
fn percent_triple(b: u8) -> [u8; 3] {
    [
        b'%',
        UPPER_HEX[usize::from(b >> 4)],
        UPPER_HEX[usize::from(b & 0xf)],
    ]
}

/// One decoded segment. `last`: the segment after the final `/` (empty there is a trailing
/// slash, or the path `/` itself, which is fine).
fn check_segment(decoded: &[u8], last: bool) -> Result<(), PathError> {
    if decoded.is_empty() {
        return if last {
            Ok(())
        } else {
            Err(PathError::EmptySegment)
        };
    }
    let text = std::str::from_utf8(decoded).map_err(|_| PathError::BadEncoding)?;
    if !text.is_ascii() {
        use unicode_normalization::UnicodeNormalization;
        let confusable = text.chars().filter(|c| !c.is_ascii()).any(|c| {
            std::iter::once(c)
                .nfkc()
                .any(|n| matches!(n, '.' | '/' | '\\' | '%' | ';'))
        });
        if confusable {
            return Err(PathError::Confusable);
        }
    }
    // The part before a `;parameter` is what Tomcat and its kin take as the segment.
    let name = text.split(';').next().unwrap_or(text);
    if name == "." || name == ".." {
        return Err(PathError::DotSegment);
    }
    // What is left after one decoding must not be another percent-encoding: a upstream that
    // decodes twice would read another path (`%2564eclare` is `declare` there).
    let double = decoded
        .windows(3)
        .any(|w| matches!(w, [b'%', h, l] if hex(*h).is_some() && hex(*l).is_some()));
    if double {
        return Err(PathError::DoubleEncoding);
    }
    Ok(())
}

/// Ways some upstreams read a path that RFC 3986 does not: each a function of the canonical
/// path that returns `None` when it reads the path as it is (the common case, no allocation).
pub type Reading = fn(&str) -> Option<String>;

/// The readings checked, by name.
pub const READINGS: [(&str, Reading); 5] = [
    ("parameters stripped", without_parameters),
    ("case folded", case_folded),
    ("trailing dots and spaces trimmed", trailing_trimmed),
    ("extensions stripped", without_extensions),
    ("all of these", all_readings),
];

/// Every segment's `;parameters` removed: how Tomcat, Jetty and Spring read it (`%3B` counts
/// as `;` too, for those that decode before they strip).
pub fn without_parameters(canonical: &str) -> Option<String> {
    if !canonical.contains(';') && !canonical.contains("%3B") {
        return None;
    }
    Some(map_segments(canonical, |seg| {
        let cut = [seg.find(';'), seg.find("%3B")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(seg.len());
        seg.get(..cut).unwrap_or(seg)
    }))
}

/// ASCII letters in lower case: how a case-insensitive server (IIS, a Windows file system,
/// some Java and .NET routers) reads it.
pub fn case_folded(canonical: &str) -> Option<String> {
    canonical
        .bytes()
        .any(|b| b.is_ascii_uppercase())
        .then(|| {
            // Keep percent-encodings (upper-case hex) as they are.
            let mut out = String::with_capacity(canonical.len());
            let mut hex_left = 0;
            for c in canonical.chars() {
                if hex_left > 0 {
                    hex_left -= 1;
                    out.push(c);
                } else if c == '%' {
                    hex_left = 2;
                    out.push(c);
                } else {
                    out.push(c.to_ascii_lowercase());
                }
            }
            out
        })
        .filter(|folded| folded != canonical)
}

/// Trailing dots and spaces of every segment removed: how Windows (IIS) reads `declare.` and
/// `declare%20`.
pub fn trailing_trimmed(canonical: &str) -> Option<String> {
    let trims = canonical
        .split('/')
        .any(|seg| seg.ends_with('.') || seg.ends_with("%20"));
    trims.then(|| {
        map_segments(canonical, |mut seg| {
            loop {
                if let Some(s) = seg.strip_suffix('.') {
                    seg = s;
                } else if let Some(s) = seg.strip_suffix("%20") {
                    seg = s;
                } else {
                    return seg;
                }
            }
        })
    })
}

/// Every segment's `.extension` removed: how suffix pattern matching (older Spring MVC)
/// serves `/api/invoice.json` from `/api/invoice`.
pub fn without_extensions(canonical: &str) -> Option<String> {
    let has = canonical
        .split('/')
        .any(|seg| seg.rfind('.').is_some_and(|i| i > 0));
    has.then(|| {
        map_segments(canonical, |seg| match seg.rfind('.') {
            Some(i) if i > 0 => seg.get(..i).unwrap_or(seg),
            _ => seg,
        })
    })
}

/// The other readings together.
pub fn all_readings(canonical: &str) -> Option<String> {
    let mut path = canonical.to_string();
    let mut changed = false;
    for reading in [
        without_parameters,
        case_folded,
        trailing_trimmed,
        without_extensions,
    ] {
        if let Some(p) = reading(&path) {
            path = p;
            changed = true;
        }
    }
    changed.then_some(path)
}

fn map_segments<'a>(path: &'a str, f: impl Fn(&'a str) -> &'a str) -> String {
    let mut out = String::with_capacity(path.len());
    for (n, seg) in path.split('/').enumerate() {
        if n > 0 {
            out.push('/');
        }
        out.push_str(f(seg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_pass_unchanged_without_allocating() {
        for p in [
            "/",
            "/api/declare/vat",
            "/api/declare/",
            "/a.b/c..d/.e",
            "/x;v=1/y",
        ] {
            let c = canonical(p).unwrap();
            assert!(matches!(c, std::borrow::Cow::Borrowed(_)), "{p}");
            assert_eq!(c, p);
        }
    }

    #[test]
    fn every_confusing_form_of_the_reported_attack_is_refused() {
        use PathError::*;
        let cases = [
            ("/api/query/../declare/vat", DotSegment),
            ("/api/query/%2e%2e/declare/vat", DotSegment),
            ("/api/query/.%2E/declare/vat", DotSegment),
            ("/api/query/%2E./declare/vat", DotSegment),
            ("/api/query/..;/declare/vat", DotSegment),
            ("/api/query/..;jsessionid=1/declare", DotSegment),
            ("/api/query/..%3b/declare", DotSegment),
            ("/api/query/..%2fdeclare", Separator),
            ("/api/query/..%2Fdeclare", Separator),
            ("/api/query/%5c..%5cdeclare", Separator),
            ("/api/query/\\..\\declare", Separator),
            ("/api/query/./x", DotSegment),
            ("/api/query/.", DotSegment),
            ("/api/query/..", DotSegment),
            ("/..", DotSegment),
            ("/api//declare", EmptySegment),
            ("//api/declare", EmptySegment),
            ("/api/%00", Control),
            ("/api/%0a", Control),
            ("/api/%7F", Control),
            ("/api/%zz", BadEncoding),
            ("/api/%4", BadEncoding),
            ("/api/%", BadEncoding),
            ("/api/%ff", BadEncoding),
            ("/api/%c0%ae%c0%ae/declare", BadEncoding),
            ("/api/query/%252e%252e/declare", DoubleEncoding),
            ("/api/query/%252f", DoubleEncoding),
            ("/api/%25%35%63", DoubleEncoding),
            ("/api/%2564eclare", DoubleEncoding),
            ("/api/query/%EF%BC%8E%EF%BC%8E/declare", Confusable),
            ("/api/query/．．/declare", Confusable),
            ("/api/query%EF%BC%8Fdeclare", Confusable),
            ("/api/query%EF%BC%BCdeclare", Confusable),
            ("/api/query/%E2%80%A5/declare", Confusable),
            ("*", NotAbsolute),
            ("", NotAbsolute),
        ];
        for (path, want) in cases {
            assert_eq!(canonical(path), Err(want), "{path}");
        }
    }

    #[test]
    fn encodings_are_normalised_as_rfc_3986_says() {
        assert_eq!(canonical("/api/%64eclare/vat").unwrap(), "/api/declare/vat");
        assert_eq!(canonical("/api/%7e%2D%5F").unwrap(), "/api/~-_");
        assert_eq!(canonical("/api/a%3bb").unwrap(), "/api/a%3Bb");
        assert_eq!(canonical("/api/%e7%a8%8e").unwrap(), "/api/%E7%A8%8E");
        // raw UTF-8 and its encoding have one canonical form
        assert_eq!(canonical("/api/税").unwrap(), "/api/%E7%A8%8E");
        assert_eq!(canonical("/api/%25").unwrap(), "/api/%25");
        assert_eq!(canonical("/api/%25x1").unwrap(), "/api/%25x1");
        // idempotent
        for p in ["/api/%64eclare", "/api/a%3bb", "/api/%e7%a8%8e"] {
            let once = canonical(p).unwrap().into_owned();
            assert_eq!(canonical(&once).unwrap(), once);
        }
    }

    #[test]
    fn parameters_are_removed_per_segment() {
        assert_eq!(without_parameters("/api/x"), None);
        assert_eq!(
            without_parameters("/api;a=1/declare;b/vat").as_deref(),
            Some("/api/declare/vat")
        );
        assert_eq!(
            without_parameters("/api%3Ba/declare").as_deref(),
            Some("/api/declare")
        );
        assert_eq!(case_folded("/api/x%2A"), None);
        assert_eq!(case_folded("/API/De%E7").as_deref(), Some("/api/de%E7"));
        assert_eq!(trailing_trimmed("/api/x.y"), None);
        assert_eq!(
            trailing_trimmed("/api/declare.%20./vat").as_deref(),
            Some("/api/declare/vat")
        );
        assert_eq!(
            without_extensions("/api/invoice.json/x").as_deref(),
            Some("/api/invoice/x")
        );
        assert_eq!(without_extensions("/api/.well-known"), None);
    }
}
