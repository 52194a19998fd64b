//! Typed ids of the rows the store hands out.
//!
//! Owns: `DeliveryId`, `ForwardId`, `DeadId` and their printed forms. Both
//! backends number deliveries and forwards with 64-bit keys of their own and
//! print them the same way (`d-12`, `o-3`), so ids read off one backend's admin
//! API mean the same thing to the CLI whatever the backend.
//! Never: builds an id in SQL; backends convert at their edge.

use std::fmt;
use std::str::FromStr;

pub use crate::event::EventId;

/// One delivery: an (event, plugin) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliveryId(pub(crate) i64);

/// One forward in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ForwardId(pub(crate) i64);

impl DeliveryId {
    /// The backend's key.
    pub fn key(self) -> i64 {
        self.0
    }
}

impl ForwardId {
    /// The backend's key.
    pub fn key(self) -> i64 {
        self.0
    }
}

/// A delivery or a forward, as named by the admin API and `hookrouter dead`: a dead
/// letter is one of these in the `dead` state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeadId {
    Delivery(DeliveryId),
    Forward(ForwardId),
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d-{}", self.0)
    }
}

impl fmt::Display for ForwardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "o-{}", self.0)
    }
}

impl fmt::Display for DeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadId::Delivery(d) => d.fmt(f),
            DeadId::Forward(o) => o.fmt(f),
        }
    }
}

/// Text that is not a delivery or forward id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {0:?} (expected d-N for a delivery or o-N for a forward)")]
pub struct BadId(pub String);

fn key(s: &str, prefix: &str) -> Option<i64> {
    s.strip_prefix(prefix)?
        .parse()
        .ok()
        .filter(|n: &i64| *n > 0)
}

impl FromStr for DeadId {
    type Err = BadId;

    fn from_str(s: &str) -> Result<Self, BadId> {
        let bad = || BadId(s.chars().take(64).collect());
        if let Some(n) = key(s, "d-") {
            Ok(DeadId::Delivery(DeliveryId(n)))
        } else if let Some(n) = key(s, "o-") {
            Ok(DeadId::Forward(ForwardId(n)))
        } else {
            Err(bad())
        }
    }
}

impl FromStr for DeliveryId {
    type Err = BadId;

    fn from_str(s: &str) -> Result<Self, BadId> {
        match s.parse()? {
            DeadId::Delivery(d) => Ok(d),
            DeadId::Forward(_) => Err(BadId(s.into())),
        }
    }
}

impl FromStr for ForwardId {
    type Err = BadId;

    fn from_str(s: &str) -> Result<Self, BadId> {
        match s.parse()? {
            DeadId::Forward(o) => Ok(o),
            DeadId::Delivery(_) => Err(BadId(s.into())),
        }
    }
}

macro_rules! serde_as_text {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_as_text!(DeliveryId, ForwardId, DeadId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_back() {
        let d: DeadId = "d-12".parse().unwrap();
        assert_eq!(d, DeadId::Delivery(DeliveryId(12)));
        assert_eq!(d.to_string(), "d-12");
        let o: DeadId = "o-3".parse().unwrap();
        assert_eq!(o.to_string(), "o-3");
        assert_eq!("o-3".parse::<ForwardId>().unwrap(), ForwardId(3));
        for bad in [
            "",
            "d-",
            "d-0",
            "d--1",
            "x-1",
            "d-1x",
            "12",
            "o-99999999999999999999",
        ] {
            assert!(bad.parse::<DeadId>().is_err(), "{bad:?}");
        }
        assert!("d-1".parse::<ForwardId>().is_err());
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"d-12\"");
    }
}
