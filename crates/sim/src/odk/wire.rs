//! Byte-level helpers that reproduce what Central's Node.js stack puts on the wire: URL
//! percent-decoding, the WHATWG `URLSearchParams` serialiser (used for `@odata.nextLink`),
//! Express's body-hash ETag, timestamps, and the identifier sanitiser. No HTTP routing here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use sha1::{Digest as _, Sha1};

/// Percent-decodes `s`; with `plus_as_space` also turns `+` into a space (query strings).
/// Invalid escapes are kept literally and invalid UTF-8 is replaced, as browsers and Node do.
pub(crate) fn percent_decode(s: &str, plus_as_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses a raw query string into ordered, decoded pairs (`application/x-www-form-urlencoded`).
pub(crate) fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(part, true), String::new()),
        })
        .collect()
}

/// Serialises pairs exactly as `URLSearchParams.prototype.toString` does: ASCII alphanumerics
/// and `*-._` stay, a space becomes `+`, every other byte is `%XX` in upper case.
pub(crate) fn serialize_query(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        form_encode(k, &mut out);
        out.push('=');
        form_encode(v, &mut out);
    }
    out
}

fn form_encode(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// `encodeURIComponent`, used for cookie values.
pub(crate) fn encode_uri_component(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Express's default ETag for a response body: `W/"<length in hex>-<27 chars of base64 SHA-1>"`.
pub(crate) fn express_etag(body: &[u8]) -> String {
    let digest = Sha1::digest(body);
    let b64 = B64.encode(digest.as_slice());
    let short: String = b64.chars().take(27).collect();
    format!("W/\"{:x}-{short}\"", body.len())
}

/// Hex SHA-1 of `data` (the simulator's stand-in for Central's event hashes).
pub(crate) fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Central's timestamps: ISO-8601, UTC, milliseconds, `Z` (a JavaScript `Date` in JSON).
pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The `Expires=` date of a cookie (RFC 7231 IMF-fixdate).
pub(crate) fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Central's `sanitizeOdataIdentifier`: each run of characters outside `[A-Za-z0-9_]` becomes
/// `_`, and a name that does not start with a letter or `_` gets a `_` prefix.
pub(crate) fn sanitize_odata_identifier(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    let mut in_run = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    match out.chars().next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => out,
        _ => format!("_{out}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_matches_express() {
        // Recorded: the 80-byte 401.2 body had ETag W/"50-ZRrLMzj8S67I1VD1Vnbql2PHY1Y".
        let body =
            br#"{"message":"Could not authenticate with the provided credentials.","code":401.2}"#;
        assert_eq!(express_etag(body), "W/\"50-ZRrLMzj8S67I1VD1Vnbql2PHY1Y\"");
    }

    #[test]
    fn query_round_trip_like_urlsearchparams() {
        let pairs = parse_query("$orderby=__system/submissionDate%20asc&$top=1&$expand=*&x=a+b");
        assert_eq!(
            pairs[0],
            (
                "$orderby".to_owned(),
                "__system/submissionDate asc".to_owned()
            )
        );
        assert_eq!(
            serialize_query(&pairs),
            "%24orderby=__system%2FsubmissionDate+asc&%24top=1&%24expand=*&x=a+b"
        );
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%2", false), "%2");
        assert_eq!(percent_decode("%27a%27", false), "'a'");
    }

    #[test]
    fn identifiers_are_sanitised_like_central() {
        assert_eq!(
            sanitize_odata_identifier("household-info"),
            "household_info"
        );
        assert_eq!(sanitize_odata_identifier("1st_visit"), "_1st_visit");
        assert_eq!(sanitize_odata_identifier("a b--c"), "a_b_c");
    }

    #[test]
    fn cookie_values_are_uri_encoded() {
        assert_eq!(encode_uri_component("ab$c!"), "ab%24c!");
    }
}
