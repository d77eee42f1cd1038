//! An event's place in the event log.
//!
//! On the wire an offset is the text `<ms>-<seq>` (a Redis stream id, which the
//! in-process log imitates). In-order, exactly-once fan-out and resume depend on its
//! numeric order, which the text does not have (`"9-0" > "10-0"`), so inside the
//! services it is this type, parsed once at the edges, and compared only as numbers.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A log position: milliseconds, then a sequence within the millisecond. The derived
/// order is the log's order; `Option<Offset>` ("nothing yet" as `None`) sorts `None`
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset {
    pub ms: u64,
    pub seq: u64,
}

impl Offset {
    /// Before every event: reading the log after it reads all of it.
    pub const START: Offset = Offset { ms: 0, seq: 0 };

    pub const fn new(ms: u64, seq: u64) -> Offset {
        Offset { ms, seq }
    }

    /// The greatest offset before this one (`None` for [`Offset::START`]): reading the
    /// log after it starts with the event at this offset, if the log holds it.
    pub const fn before(self) -> Option<Offset> {
        match (self.ms, self.seq) {
            (0, 0) => None,
            (ms, 0) => Some(Offset::new(ms - 1, u64::MAX)),
            (ms, seq) => Some(Offset::new(ms, seq - 1)),
        }
    }
}

/// Text that is not `<ms>-<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an offset is <ms>-<seq>, like 1700000000000-0")]
pub struct InvalidOffset;

impl FromStr for Offset {
    type Err = InvalidOffset;

    fn from_str(text: &str) -> Result<Offset, InvalidOffset> {
        let (ms, seq) = text.split_once('-').ok_or(InvalidOffset)?;
        let number = |part: &str| {
            // `u64::from_str` takes a leading '+'; an offset has digits only.
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidOffset);
            }
            part.parse().map_err(|_| InvalidOffset)
        };
        Ok(Offset::new(number(ms)?, number(seq)?))
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl Serialize for Offset {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Offset, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Offset {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some(r"^\d+-\d+$"))
            .description(Some("event log position, <ms>-<seq>; ordered as numbers"))
            .into()
    }
}

impl utoipa::ToSchema for Offset {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_is_the_greatest_smaller_offset() {
        assert_eq!(Offset::START.before(), None);
        assert_eq!(Offset::new(5, 3).before(), Some(Offset::new(5, 2)));
        assert_eq!(Offset::new(5, 0).before(), Some(Offset::new(4, u64::MAX)));
        let before = Offset::new(5, 0).before().unwrap();
        assert!(before < Offset::new(5, 0) && before > Offset::new(4, 7));
    }

    fn offset(text: &str) -> Offset {
        text.parse().unwrap()
    }

    #[test]
    fn offsets_order_as_numbers_not_as_text() {
        assert!(offset("9-0") < offset("10-0"));
        assert!(offset("10-2") < offset("10-10"));
        assert_eq!(offset("10-10"), offset("10-10"));
        assert!(offset("11-0") > offset("10-99"));
        assert!(None < Some(Offset::START), "nothing yet comes first");
    }

    #[test]
    fn only_ms_dash_seq_parses() {
        for bad in [
            "junk",
            "",
            "1",
            "1-",
            "-1",
            "1-2-3",
            "+1-0",
            "1- 0",
            "a-0",
            "99999999999999999999-0",
        ] {
            assert_eq!(bad.parse::<Offset>(), Err(InvalidOffset), "{bad:?}");
        }
    }

    #[test]
    fn text_and_json_round_trip_unchanged() {
        let parsed = offset("1700000000000-7");
        assert_eq!(parsed, Offset::new(1_700_000_000_000, 7));
        assert_eq!(parsed.to_string(), "1700000000000-7");
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(json, r#""1700000000000-7""#);
        assert_eq!(serde_json::from_str::<Offset>(&json).unwrap(), parsed);
        assert!(serde_json::from_str::<Offset>(r#""10""#).is_err());
    }
}
