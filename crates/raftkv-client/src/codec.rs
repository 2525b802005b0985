//! Bytes on the HTTP API: keys percent-encoded in paths, byte strings in
//! JSON as `"name": "text"` (UTF-8) or `"name_b64": "..."` (anything else),
//! and endpoints as `host:port`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};

use crate::Error;

/// Bytes left as they are in a key: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes arbitrary bytes as one path segment or query value
/// (`/` included, so a key is always one segment).
pub fn encode(bytes: &[u8]) -> String {
    percent_encode(bytes, UNRESERVED).to_string()
}

/// `host:port` from `host:port`, `http://host:port` or `http://host:port/`.
pub fn endpoint(s: &str) -> Result<String, Error> {
    let bad = || Error::BadEndpoint(s.to_string());
    let rest = s.trim();
    let rest = rest.strip_prefix("http://").unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', ' ', '?', '#']) || rest.contains("://") {
        return Err(bad());
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(rest.to_string())
}

/// `host:port` of an absolute `http://host:port/...` URL (a `Location`).
pub fn authority(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    endpoint(&rest[..end]).ok()
}

/// Puts byte string `value` into `map` as `name` (UTF-8) or `name_b64`.
pub fn put_bytes(map: &mut Map<String, Value>, name: &str, value: &[u8]) {
    match std::str::from_utf8(value) {
        Ok(text) => map.insert(name.to_string(), Value::String(text.to_string())),
        Err(_) => map.insert(format!("{name}_b64"), Value::String(STANDARD.encode(value))),
    };
}

/// Reads byte string `name` from `obj`: `None` when it is `null` or absent.
pub fn take_bytes(obj: &Value, name: &str) -> Result<Option<Bytes>, Error> {
    if let Some(text) = obj.get(name).and_then(Value::as_str) {
        return Ok(Some(Bytes::copy_from_slice(text.as_bytes())));
    }
    match obj.get(format!("{name}_b64")).and_then(Value::as_str) {
        Some(b64) => STANDARD
            .decode(b64)
            .map(|v| Some(Bytes::from(v)))
            .map_err(|e| Error::Protocol(format!("\"{name}_b64\" is not base64: {e}"))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_segment() {
        assert_eq!(encode(b"a/b c"), "a%2Fb%20c");
        assert_eq!(encode(b"\xff-_.~"), "%FF-_.~");
    }

    #[test]
    fn endpoints_parse_with_or_without_a_scheme() {
        assert_eq!(endpoint("127.0.0.1:8001").unwrap(), "127.0.0.1:8001");
        assert_eq!(endpoint("http://h:1/").unwrap(), "h:1");
        for bad in ["", "h", "h:x", "https://h:1", "h:1/path", ":1", "h:99999"] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
        assert_eq!(authority("http://h:2/v1/kv/a").as_deref(), Some("h:2"));
        assert_eq!(authority("/v1/kv/a"), None);
    }

    #[test]
    fn json_bytes_round_trip() {
        for value in [&b"text"[..], b"", b"\xff\x00"] {
            let mut map = Map::new();
            put_bytes(&mut map, "v", value);
            let back = take_bytes(&Value::Object(map), "v").unwrap();
            assert_eq!(back.as_deref(), Some(value));
        }
        assert_eq!(
            take_bytes(&serde_json::json!({"v": null}), "v").unwrap(),
            None
        );
        assert!(take_bytes(&serde_json::json!({"v_b64": "!"}), "v").is_err());
    }
}
