//! Field types of request bodies: each reads one JSON value and refuses anything else with the
//! message a sender sees (`must be a string`, `must be true or false`, …), so a body type made of
//! them validates field by field, and [`crate::body`] names the field that failed.
//!
//! Each type reads the value as a `serde_json::Value` first (numbers keep their text: the
//! workspace enables `arbitrary_precision`), so an exact decimal is never rounded through a float
//! and an integer order id keeps every digit. Each also describes itself as an OpenAPI schema
//! ([`utoipa::PartialSchema`]), which body types use for their fields.

use std::fmt;

use rust_decimal::Decimal;
use serde::{de::Error as _, Deserialize, Deserializer};
use serde_json::Value;
use utoipa::{
    openapi::{
        schema::{ObjectBuilder, OneOfBuilder, Type},
        RefOr, Schema,
    },
    PartialSchema,
};

use crate::error::ApiError;

/// The message of a refused value of the wrong JSON type.
const NOT_A_STRING: &str = "must be a string";

/// Reads one JSON value (any type), for the types below to judge.
fn value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    Value::deserialize(deserializer)
}

/// A JSON string. U+0000 is refused: Postgres cannot store it in text, so it would otherwise fail
/// later (a 500 here, a dead-lettered event in the worker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl Text {
    /// The text, trimmed; `None` when that leaves nothing.
    pub fn trimmed(&self) -> Option<&str> {
        Some(self.0.trim()).filter(|text| !text.is_empty())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match value(deserializer)? {
            Value::String(text) if text.contains('\0') => Err(D::Error::custom(
                "must not contain the NUL character (U+0000)",
            )),
            Value::String(text) => Ok(Text(text)),
            _ => Err(D::Error::custom(NOT_A_STRING)),
        }
    }
}

impl PartialSchema for Text {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).into()
    }
}

/// An identifier sent as a string or an integer (order numbers often are integers; an integer's
/// digits are kept exactly, however large). What it may contain is the domain type's business
/// (`OrderId::parse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdText(pub String);

impl<'de> Deserialize<'de> for IdText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match value(deserializer)? {
            Value::String(text) => Ok(IdText(text)),
            Value::Number(number) if number.is_u64() || number.is_i64() => {
                Ok(IdText(number.to_string()))
            }
            _ => Err(D::Error::custom(NOT_A_STRING)),
        }
    }
}

impl PartialSchema for IdText {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255)),
            )
            .item(ObjectBuilder::new().schema_type(Type::Integer))
            .into()
    }
}

/// An exact decimal sent as a JSON number or a decimal string, parsed from its text by
/// `shared::money::parse_decimal` (held digit for digit, or refused; never rounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactDecimal(pub Decimal);

impl<'de> Deserialize<'de> for ExactDecimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = match value(deserializer)? {
            Value::Number(number) => number.to_string(),
            Value::String(text) => text,
            _ => return Err(D::Error::custom("must be a number or a decimal string")),
        };
        shared::money::parse_decimal(&text)
            .map(ExactDecimal)
            .map_err(D::Error::custom)
    }
}

/// What `shared::money::parse_decimal` reads: a plain or scientific decimal, surrounding space
/// allowed.
pub const DECIMAL_PATTERN: &str = r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$";

/// The schema of an exact decimal whose JSON number form has the bounds `number` sets.
pub fn decimal_schema(number: ObjectBuilder, description: &str, example: Value) -> Schema {
    OneOfBuilder::new()
        .item(number.schema_type(Type::Number))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(DECIMAL_PATTERN)),
        )
        .description(Some(format!(
            "{description} A JSON number or a decimal string; its digits are kept exactly, never \
             rounded through a float."
        )))
        .examples([example])
        .build()
        .into()
}

/// `true` or `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match value(deserializer)? {
            Value::Bool(flag) => Ok(Flag(flag)),
            _ => Err(D::Error::custom("must be true or false")),
        }
    }
}

impl PartialSchema for Flag {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Boolean).into()
    }
}

/// A whole number from `MIN` to `MAX` (a JSON integer; `5.0` and `"5"` are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeNumber<const MIN: i64, const MAX: i64>(pub i64);

impl<const MIN: i64, const MAX: i64> WholeNumber<MIN, MAX> {
    /// The message of a refused value.
    pub fn message() -> String {
        format!("must be a whole number from {MIN} to {MAX}")
    }
}

impl<'de, const MIN: i64, const MAX: i64> Deserialize<'de> for WholeNumber<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match value(deserializer)?.as_i64() {
            Some(number) if (MIN..=MAX).contains(&number) => Ok(WholeNumber(number)),
            _ => Err(D::Error::custom(Self::message())),
        }
    }
}

impl<const MIN: i64, const MAX: i64> PartialSchema for WholeNumber<MIN, MAX> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(MIN))
            .maximum(Some(MAX))
            .into()
    }
}

/// A field of a change (`PATCH`) where `null` means something: absent leaves the setting alone,
/// `null` clears it, a value sets it. Use with `#[serde(default)]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    /// Not in the body.
    #[default]
    Absent,
    /// `null`.
    Null,
    /// A value.
    Set(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            Some(value) => Patch::Set(value),
            None => Patch::Null,
        })
    }
}

/// A nested object of a body (`referral`, `providerSecrets`): only a JSON object is read into
/// `T`. (A derived struct would also accept an array of its fields in order; a body never
/// means that.) Reading goes through the same deserializer, so errors inside still name their
/// full path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = Object<T>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A map key as sent (exchange-rate currency codes): kept verbatim so an error names the key
/// exactly as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(transparent)]
pub struct Key(pub String);

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An exact decimal in an answer: a JSON number written from the decimal's own digits
/// (normalised: `1.50` is `1.5`), never through a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Number(pub Decimal);

impl serde::Serialize for Number {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&crate::body::decimal_to_json(self.0), serializer)
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ExactDecimal::deserialize(deserializer).map(|decimal| Number(decimal.0))
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.normalize())
    }
}

/// A required field: its value, or `400 <field>: is required`.
pub fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::field(field, "is required"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T, String> {
        T::deserialize(value).map_err(|error| error.to_string())
    }

    #[test]
    fn each_type_refuses_other_json_types_with_its_message() {
        assert_eq!(read::<Text>(json!(5)).unwrap_err(), "must be a string");
        assert!(read::<Text>(json!("a\u{0}b"))
            .unwrap_err()
            .contains("U+0000"));
        assert_eq!(read::<IdText>(json!(1.5)).unwrap_err(), "must be a string");
        assert_eq!(
            read::<IdText>(json!(820982911946154508_u64)).unwrap().0,
            "820982911946154508"
        );
        assert_eq!(
            read::<Flag>(json!("true")).unwrap_err(),
            "must be true or false"
        );
        assert_eq!(
            read::<WholeNumber<0, 10>>(json!(11)).unwrap_err(),
            "must be a whole number from 0 to 10"
        );
        assert_eq!(read::<WholeNumber<0, 10>>(json!(10)).unwrap().0, 10);
        assert_eq!(
            read::<ExactDecimal>(json!([1])).unwrap_err(),
            "must be a number or a decimal string"
        );
    }

    #[test]
    fn decimals_keep_their_digits() {
        let parsed: ExactDecimal = serde_json::from_str("123456789012345.678").expect("a decimal");
        assert_eq!(parsed.0.to_string(), "123456789012345.678");
        let sci: ExactDecimal = serde_json::from_str("1.5E-3").expect("a decimal");
        assert_eq!(sci.0.to_string(), "0.0015");
        assert!(serde_json::from_str::<ExactDecimal>("12345678901234567890.123").is_err());
    }

    #[test]
    fn patch_tells_absent_from_null() {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            secret: Patch<Text>,
        }
        let absent: Body = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.secret, Patch::Absent);
        let null: Body = serde_json::from_str(r#"{"secret": null}"#).unwrap();
        assert_eq!(null.secret, Patch::Null);
        let set: Body = serde_json::from_str(r#"{"secret": "x"}"#).unwrap();
        assert_eq!(set.secret, Patch::Set(Text("x".into())));
    }
}
