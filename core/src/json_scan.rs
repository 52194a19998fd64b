//! Reading a request body without building its JSON tree: one pass that checks
//! its syntax and reads the values at RFC 6901 pointers.
//!
//! Owns: the ingress's view of the body as JSON. The body is kept as bytes;
//! the event type and id are read out of it in one pass over the document
//! (which is also its syntax check), skipping everything off their paths.
//! Never: builds a tree: a `serde_json::Value` of every body allocated each
//! of its keys and values only for two of them to be read
//! (`cargo bench -p hookrouter-core --bench intake`).
//!
//! The answers are those of `serde_json::from_slice::<Value>` followed by
//! `Value::pointer` (tests compare the two): the same syntax errors, the last
//! of duplicate keys, array indexes without a sign or leading zeros.

use std::fmt;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Any JSON value, read and dropped. Unlike `serde::de::IgnoredAny` (which
/// serde_json skips on a path of its own, without the nesting limit), it is
/// parsed as a `Value` is: the same nesting limit and the same errors.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// An RFC 6901 pointer, split into its reference tokens (`~1` and `~0`
/// decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    tokens: Vec<String>,
}

impl Pointer {
    /// `spec` starts with `/` (the caller has checked the syntax).
    pub fn new(spec: &str) -> Pointer {
        Pointer {
            tokens: spec
                .split('/')
                .skip(1)
                .map(|t| t.replace("~1", "/").replace("~0", "~"))
                .collect(),
        }
    }
}

/// The scalars at several pointers, read in one pass over a body that is
/// also checked to be JSON.
#[derive(Debug, Default)]
pub struct Scanned<'p> {
    found: Vec<(&'p Pointer, Option<String>)>,
}

impl<'p> Scanned<'p> {
    /// Walks `body` once for all of `pointers` (at most 64); an error if the
    /// body is not one JSON document (the error `from_slice::<Value>` gives).
    pub fn scan(
        body: &[u8],
        pointers: impl IntoIterator<Item = &'p Pointer>,
    ) -> Result<Scanned<'p>, serde_json::Error> {
        let pointers: Vec<&Pointer> = pointers.into_iter().take(64).collect();
        let mut out = vec![None; pointers.len()];
        let targets = pointers
            .iter()
            .enumerate()
            .map(|(slot, p)| (slot, p.tokens.as_slice()))
            .collect();
        let mut de = serde_json::Deserializer::from_slice(body);
        Node {
            targets,
            out: &mut out,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(Scanned {
            found: pointers.into_iter().zip(out).collect(),
        })
    }

    /// What the scan found at `pointer` (a non-empty string, or a number as
    /// its text); `None` also for a pointer that was not scanned.
    pub fn get(&self, pointer: &Pointer) -> Option<String> {
        self.found
            .iter()
            .find(|(p, _)| *p == pointer)
            .and_then(|(_, v)| v.clone())
            .filter(|s| !s.is_empty())
    }
}

/// One value of the document and the paths that pass through it: a path that
/// ends here takes the value if it is a scalar; the others go on into its
/// members or elements. Each visit first clears its paths' slots, so the last
/// of duplicate keys decides, as in a `Value`.
struct Node<'a, 'p> {
    targets: Vec<(usize, &'p [String])>,
    out: &'a mut Vec<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        for (slot, _) in &self.targets {
            self.out[*slot] = None;
        }
        d.deserialize_any(self)
    }
}

impl Node<'_, '_> {
    /// The paths that end at this value take `v`.
    fn scalar<E>(self, v: Option<String>) -> Result<(), E> {
        for (slot, rest) in &self.targets {
            if rest.is_empty() {
                self.out[*slot] = v.clone();
            }
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.scalar(Some(v.to_owned()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.scalar(Some(serde_json::Number::from(v).to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.scalar(Some(serde_json::Number::from(v).to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.scalar(serde_json::Number::from_f64(v).map(|n| n.to_string()))
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let deeper: Vec<(usize, &[String])> = self
            .targets
            .iter()
            .filter(|(_, rest)| !rest.is_empty())
            .copied()
            .collect();
        let tokens: Vec<&str> = deeper.iter().map(|(_, rest)| rest[0].as_str()).collect();
        while let Some(hits) = map.next_key_seed(KeyAmong(&tokens))? {
            if hits == 0 {
                map.next_value::<Skip>()?;
                continue;
            }
            let targets = deeper
                .iter()
                .enumerate()
                .filter(|(i, _)| hits & (1 << i) != 0)
                .map(|(_, (slot, rest))| (*slot, &rest[1..]))
                .collect();
            map.next_value_seed(Node {
                targets,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let deeper: Vec<(usize, &[String], Option<usize>)> = self
            .targets
            .iter()
            .filter(|(_, rest)| !rest.is_empty())
            .map(|(slot, rest)| (*slot, *rest, index(&rest[0])))
            .collect();
        for i in 0.. {
            let targets: Vec<(usize, &[String])> = deeper
                .iter()
                .filter(|(_, _, at)| *at == Some(i))
                .map(|(slot, rest, _)| (*slot, &rest[1..]))
                .collect();
            let more = if targets.is_empty() {
                seq.next_element::<Skip>()?.is_some()
            } else {
                seq.next_element_seed(Node {
                    targets,
                    out: &mut *self.out,
                })?
                .is_some()
            };
            if !more {
                break;
            }
        }
        Ok(())
    }
}

/// Which of up to 64 tokens an object key equals, as a bit mask, without
/// allocating the key.
struct KeyAmong<'t>(&'t [&'t str]);

impl<'de> DeserializeSeed<'de> for KeyAmong<'_> {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyAmong<'_> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E>(self, v: &str) -> Result<u64, E> {
        Ok(self
            .0
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == v)
            .fold(0, |mask, (i, _)| mask | (1 << i)))
    }
}

/// An array index as `Value::pointer` reads one: digits, no sign, no leading
/// zero.
fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The syntax check alone: a scan for no pointer.
    fn check(body: &[u8]) -> Result<(), serde_json::Error> {
        Scanned::scan(body, std::iter::empty()).map(|_| ())
    }

    /// One pointer, scanned alone.
    fn one(body: &[u8], spec: &str) -> Option<String> {
        let p = Pointer::new(spec);
        Scanned::scan(body, [&p]).ok()?.get(&p)
    }

    /// What the tree answers, for comparison.
    fn by_tree(body: &[u8], spec: &str) -> Option<String> {
        let v: Value = serde_json::from_slice(body).ok()?;
        match v.pointer(spec)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    #[test]
    fn answers_as_the_tree_does() {
        let sample = include_bytes!("../../samples/optum/payment_loading_requested.json");
        let bodies: Vec<&[u8]> = vec![
            sample,
            br#"{"a":{"b":[10,"x",{"c":"deep"}]},"n":-3,"f":1.5e3,"big":18446744073709551615}"#,
            br#"{"a":"first","a":"last","e":"","t":true,"z":null,"o":{},"l":[]}"#,
            br#"{"a/b":"slash","m~n":"tilde","":"empty key","a":{"":"inner"}}"#,
            br#"[ "zero", "one" ]"#,
            br#""just a string""#,
            br#"{"esc\u0061pe":"by escape","s":"tab\tand \u00e9"}"#,
            br#"{"a":1}"#,
            b"{\"a\":1} trailing",
            b"{\"a\":",
            b"",
            b"  {\"a\" : \"spaced\" }  ",
        ];
        let pointers = [
            "/eventType",
            "/id",
            "/data/paymentId",
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1",
            "/a/b/2/c",
            "/a/b/3",
            "/a/b/01",
            "/a/b/+1",
            "/n",
            "/f",
            "/big",
            "/e",
            "/t",
            "/z",
            "/o",
            "/l",
            "/a~1b",
            "/m~0n",
            "/",
            "/a/",
            "/0",
            "/1",
            "/escape",
            "/s",
            "/missing",
        ];
        for body in &bodies {
            for p in pointers {
                assert_eq!(
                    one(body, p),
                    by_tree(body, p),
                    "{p} in {}",
                    String::from_utf8_lossy(body)
                );
            }
            // All of them in one pass.
            let all: Vec<Pointer> = pointers.iter().map(|p| Pointer::new(p)).collect();
            match Scanned::scan(body, all.iter()) {
                Ok(scanned) => {
                    for (p, spec) in all.iter().zip(pointers) {
                        assert_eq!(scanned.get(p), by_tree(body, spec), "{spec} (one pass)");
                    }
                }
                Err(_) => assert!(serde_json::from_slice::<Value>(body).is_err()),
            }
            assert_eq!(
                check(body).is_ok(),
                serde_json::from_slice::<Value>(body).is_ok(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_syntax_error_is_the_trees() {
        for body in [
            &b"{\"a\":"[..],
            b"{\"a\" 1}",
            b"[1,]",
            b"nul",
            b"{} {}",
            b"",
        ] {
            let tree = serde_json::from_slice::<Value>(body).unwrap_err();
            assert_eq!(check(body).unwrap_err().to_string(), tree.to_string());
            let p = Pointer::new("/a");
            let scan = Scanned::scan(body, [&p]).unwrap_err();
            assert_eq!(scan.to_string(), tree.to_string());
        }
    }

    #[test]
    fn nesting_is_limited_as_in_the_tree() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(serde_json::from_slice::<Value>(deep.as_bytes()).is_err());
        assert!(check(deep.as_bytes()).is_err());
        assert_eq!(one(deep.as_bytes(), "/0"), None);
        let p = Pointer::new("/0");
        assert!(Scanned::scan(deep.as_bytes(), [&p]).is_err());
    }
}
