//! Ids on the wire. User and product ids are 1 to 64 of `[A-Za-z0-9_-]`
//! (they end up in URLs, SQL parameters and span attributes); order and event
//! ids are UUIDs. Each type checks once, when it is made.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(&'static str);

const TEXT_ID_RULE: &str = "must be 1 to 64 letters, digits, '-' or '_'";

fn valid_text_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// `id` if it is 1 to 64 of `[A-Za-z0-9_-]`.
            pub fn parse(id: impl Into<String>) -> Result<Self, InvalidId> {
                let id = id.into();
                if valid_text_id(&id) { Ok(Self(id)) } else { Err(InvalidId(TEXT_ID_RULE)) }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_id!(
    /// A user id, as user-service knows it (`user123`).
    UserId
);
text_id!(
    /// A product id, as inventory-service knows it (`prod1`).
    ProductId
);

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A new, time-ordered id (UUID v7).
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                uuid::Uuid::parse_str(s).map(Self).map_err(|_| InvalidId(concat!($what, " must be a UUID")))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// An order's id, given by order-service.
    OrderId,
    "order id"
);
uuid_id!(
    /// An event's id: consumers skip an event id they processed before.
    EventId,
    "event id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_ids_are_checked_once_when_made_or_read() {
        assert_eq!(UserId::parse("user123").unwrap().as_str(), "user123");
        assert!(ProductId::parse("prod_1-a").is_ok());
        for bad in ["", "u; DROP TABLE users", "ü", &"x".repeat(65)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
            assert!(
                serde_json::from_value::<ProductId>(serde_json::json!(bad)).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            serde_json::to_string(&UserId::parse("user123").unwrap()).unwrap(),
            r#""user123""#
        );
    }

    #[test]
    fn uuid_ids_parse_and_print_as_plain_uuids() {
        let id: OrderId = "0190a3b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b".parse().unwrap();
        assert_eq!(id.to_string(), "0190a3b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            r#""0190a3b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b""#
        );
        assert_eq!(
            "nope".parse::<OrderId>().unwrap_err().to_string(),
            "order id must be a UUID"
        );
    }
}
