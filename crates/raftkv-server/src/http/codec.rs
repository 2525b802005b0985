//! Bytes in URLs and in JSON.
//!
//! Keys are arbitrary bytes. In a path or a query they are percent-encoded
//! (RFC 3986): `%XY` is the byte 0xXY, every other character stands for its
//! own UTF-8 bytes, and a `%` not followed by two hex digits is an error
//! (400), never guessed at. `+` is a plain plus (encode a space as `%20`).
//!
//! In JSON a byte string `b` named `name` appears as exactly one of:
//! - `"name": "text"` when `b` is valid UTF-8;
//! - `"name_b64": "..."` (standard base64, padded) when it is not;
//! - `"name": null` when there is no value at all (an absent key).
//!
//! So every byte string round-trips and none is ambiguous; requests may use
//! either form for any string.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

/// Bytes left unescaped in a key segment: RFC 3986's unreserved characters.
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A `%` not followed by two hex digits, at this byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadEncoding(pub usize);

/// Decodes a percent-encoded string into bytes, strictly.
pub fn percent_decode(s: &str) -> Result<Vec<u8>, BadEncoding> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(BadEncoding(i))?;
            let hi = hex_digit(hex[0]).ok_or(BadEncoding(i))?;
            let lo = hex_digit(hex[1]).ok_or(BadEncoding(i))?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes a key for a URL path: every byte but the unreserved
/// ones is escaped, `/` included, so the result is one path segment.
pub fn encode_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) => utf8_percent_encode(s, KEY).to_string(),
        Err(_) => key
            .iter()
            .map(|&b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect(),
    }
}

/// Splits a raw query string into `(name, value bytes)` pairs.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, Vec<u8>)>, BadEncoding> {
    let mut out = Vec::new();
    for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let name = String::from_utf8_lossy(&percent_decode(name)?).into_owned();
        out.push((name, percent_decode(value)?));
    }
    Ok(out)
}

/// Puts byte string `value` into `map` under `name` (see the module docs).
pub fn put_bytes(map: &mut Map<String, Value>, name: &str, value: Option<&[u8]>) {
    match value.map(std::str::from_utf8) {
        None => {
            map.insert(name.to_string(), Value::Null);
        }
        Some(Ok(text)) => {
            map.insert(name.to_string(), Value::String(text.to_string()));
        }
        Some(Err(_)) => {
            let b64 = STANDARD.encode(value.unwrap_or_default());
            map.insert(format!("{name}_b64"), Value::String(b64));
        }
    }
}

/// Reads byte string `name` from its text and base64 forms, of which at
/// most one may be given; `None` when neither is.
pub fn take_bytes(
    name: &str,
    text: Option<String>,
    b64: Option<String>,
) -> Result<Option<Vec<u8>>, String> {
    match (text, b64) {
        (Some(_), Some(_)) => Err(format!("give either {name:?} or \"{name}_b64\", not both")),
        (Some(t), None) => Ok(Some(t.into_bytes())),
        (None, Some(b)) => STANDARD
            .decode(b.as_bytes())
            .map(Some)
            .map_err(|e| format!("\"{name}_b64\" is not base64: {e}")),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("a%2Fb%00%ff").unwrap(), b"a/b\x00\xff");
        assert_eq!(percent_decode("a/b+c").unwrap(), b"a/b+c");
        assert_eq!(percent_decode("%"), Err(BadEncoding(0)));
        assert_eq!(percent_decode("ab%4"), Err(BadEncoding(2)));
        assert_eq!(percent_decode("%zz"), Err(BadEncoding(0)));
        assert_eq!(percent_decode("é").unwrap(), "é".as_bytes());
    }

    #[test]
    fn encoded_keys_decode_to_themselves() {
        let keys: [&[u8]; 5] = [b"plain", b"a/b c", b"\x00\xff\xfe", "ключ".as_bytes(), b""];
        for key in keys {
            let enc = encode_key(key);
            assert!(!enc.contains('/'), "{enc}");
            assert_eq!(percent_decode(&enc).unwrap(), key);
        }
    }

    #[test]
    fn query_values_are_bytes() {
        let q = query_pairs(Some("prefix=a%2F%ff&limit=3&flag")).unwrap();
        assert_eq!(
            q,
            vec![
                ("prefix".into(), b"a/\xff".to_vec()),
                ("limit".into(), b"3".to_vec()),
                ("flag".into(), vec![]),
            ]
        );
        assert_eq!(query_pairs(Some("prefix=%G0")), Err(BadEncoding(0)));
    }

    #[test]
    fn json_bytes_round_trip_unambiguously() {
        let cases: [Option<&[u8]>; 4] = [None, Some(b""), Some(b"text"), Some(b"\xff\x00")];
        for value in cases {
            let mut map = Map::new();
            put_bytes(&mut map, "v", value);
            assert_eq!(map.len(), 1);
            let text = map.get("v").and_then(|v| v.as_str()).map(String::from);
            let b64 = map.get("v_b64").and_then(|v| v.as_str()).map(String::from);
            assert_eq!(take_bytes("v", text, b64).unwrap().as_deref(), value);
        }
        assert!(take_bytes("v", Some("a".into()), Some("YQ==".into())).is_err());
        assert!(take_bytes("v", None, Some("not base64!".into())).is_err());
    }
}
