//! How headers are kept in a column: length-prefixed bytes, not JSON.
//!
//! Owns: the `headers` BLOB format (`u32` little-endian length, name, `u32`
//! length, value, repeated) and reading the JSON text of stores written before it.
//! Never: fails on a stored value: a damaged column reads as no headers.

use rusqlite::types::ValueRef;

/// Encodes header pairs for a `headers` column.
pub(super) fn encode(headers: &[(String, String)]) -> Vec<u8> {
    let len: usize = headers.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(len);
    for (k, v) in headers {
        for part in [k, v] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

/// Decodes a `headers` column: a BLOB of [`encode`], or JSON text (older stores).
pub(super) fn decode(value: ValueRef<'_>) -> Vec<(String, String)> {
    match value {
        ValueRef::Blob(b) => decode_blob(b).unwrap_or_default(),
        ValueRef::Text(t) => serde_json::from_slice(t).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn decode_blob(mut b: &[u8]) -> Option<Vec<(String, String)>> {
    let mut take = || -> Option<String> {
        let (len, rest) = b.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let (s, rest) = (rest.get(..len)?, rest.get(len..)?);
        b = rest;
        String::from_utf8(s.to_vec()).ok()
    };
    let mut out = Vec::new();
    while let Some(k) = take() {
        out.push((k, take()?));
    }
    b.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_old_json() {
        let h = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("x-empty".to_string(), String::new()),
            ("x-ünï".to_string(), "a\nb:c".to_string()),
        ];
        assert_eq!(decode(ValueRef::Blob(&encode(&h))), h);
        assert_eq!(decode(ValueRef::Blob(&encode(&[]))), vec![]);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(decode(ValueRef::Text(json.as_bytes())), h);
        // Damaged values read as no headers, never a panic.
        let mut cut = encode(&h);
        cut.truncate(cut.len() - 1);
        assert_eq!(decode(ValueRef::Blob(&cut)), vec![]);
        assert_eq!(decode(ValueRef::Blob(&[9, 0, 0, 0, b'x'])), vec![]);
        assert_eq!(decode(ValueRef::Null), vec![]);
    }
}
