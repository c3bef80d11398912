//! Reading request bodies: the raw bytes first (signatures are computed over them), then JSON
//! fields one by one so every 400 names the field that is wrong.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Largest body accepted (the contract's 1 MiB); larger ones get 413 before anything else.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The raw request body, capped at [`MAX_BODY_BYTES`].
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge)
            }
            Err(rejection) => Err(ApiError::MalformedJson(rejection.body_text())),
        }
    }
}

/// Parses an optional body: empty (or only whitespace) and JSON `null` are an empty object,
/// anything else must be a JSON object.
pub fn parse_optional_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
        return Ok(Map::new());
    }
    parse_object(bytes)
}

/// Parses a body that must be a JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::MalformedJson("expected a JSON object".into())),
        Err(error) => Err(ApiError::MalformedJson(error.to_string())),
    }
}

/// Typed access to the fields of a JSON object, with `field` errors named after their path.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    /// Fields of a top-level object.
    pub fn new(object: &'a Map<String, Value>) -> Self {
        Self {
            object,
            path: String::new(),
        }
    }

    /// The full name of `key` for error messages (`referral.advocatePoints`).
    pub fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of `key`, treating JSON `null` as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key).filter(|value| !value.is_null())
    }

    /// A required value.
    pub fn required(&self, key: &str) -> Result<&'a Value, ApiError> {
        self.get(key)
            .ok_or_else(|| ApiError::field(self.name(key), "is required"))
    }

    /// A required string.
    pub fn required_str(&self, key: &str) -> Result<&'a str, ApiError> {
        self.optional_str(key)?
            .ok_or_else(|| ApiError::field(self.name(key), "is required"))
    }

    /// An optional string. U+0000 is refused: Postgres cannot store it in text, so it would
    /// otherwise fail later (a 500 here, a dead-lettered event in the worker).
    pub fn optional_str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) if text.contains('\0') => Err(ApiError::field(
                self.name(key),
                "must not contain the NUL character (U+0000)",
            )),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(ApiError::field(self.name(key), "must be a string")),
        }
    }

    /// A required identifier sent as a string or an integer (order numbers often are integers;
    /// the integer's digits are kept exactly, however large).
    pub fn required_id(&self, key: &str) -> Result<String, ApiError> {
        match self.required(key)? {
            Value::String(text) => Ok(text.clone()),
            Value::Number(number) if number.is_u64() || number.is_i64() => Ok(number.to_string()),
            _ => Err(ApiError::field(self.name(key), "must be a string")),
        }
    }

    /// An optional boolean.
    pub fn optional_bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(ApiError::field(self.name(key), "must be true or false")),
        }
    }

    /// An optional whole number in `range`.
    pub fn optional_i64(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, ApiError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let message = format!(
            "must be a whole number from {} to {}",
            range.start(),
            range.end()
        );
        match value.as_i64() {
            Some(number) if range.contains(&number) => Ok(Some(number)),
            _ => Err(ApiError::field(self.name(key), message)),
        }
    }

    /// An exact decimal sent as a JSON number or a string (never rounded through a float).
    pub fn decimal(&self, key: &str, value: &Value) -> Result<Decimal, ApiError> {
        let text = match value {
            Value::Number(number) => number.to_string(),
            Value::String(text) => text.clone(),
            _ => {
                return Err(ApiError::field(
                    self.name(key),
                    "must be a number or a decimal string",
                ));
            }
        };
        shared::money::parse_decimal(&text)
            .map_err(|error| ApiError::field(self.name(key), error.to_string()))
    }

    /// An optional decimal within `[min, max]`.
    pub fn optional_decimal(
        &self,
        key: &str,
        min: Decimal,
        max: Decimal,
    ) -> Result<Option<Decimal>, ApiError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let number = self.decimal(key, value)?;
        if number < min || number > max {
            return Err(ApiError::field(
                self.name(key),
                format!("must be from {min} to {max}"),
            ));
        }
        Ok(Some(number))
    }

    /// A nested object, if present.
    pub fn optional_object(&self, key: &str) -> Result<Option<Fields<'a>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(object)) => Ok(Some(Fields {
                object,
                path: self.name(key),
            })),
            Some(_) => Err(ApiError::field(self.name(key), "must be an object")),
        }
    }

    /// Refuses any field not in `known` (strict admin bodies: a typo must not silently change
    /// nothing): 400 naming the first unknown field.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self
            .object
            .keys()
            .find(|key| !known.contains(&key.as_str()))
        {
            Some(unknown) => Err(ApiError::field(
                self.name(unknown),
                format!(
                    "is not a known field (expected one of: {})",
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// The underlying map (for maps of arbitrary keys such as `exchangeRates`).
    pub fn entries(&self) -> impl Iterator<Item = (&'a String, &'a Value)> {
        self.object.iter()
    }
}

/// Turns an exact decimal into a JSON number without going through a float.
pub fn decimal_to_json(value: Decimal) -> Value {
    value
        .normalize()
        .to_string()
        .parse::<serde_json::Number>()
        .map(Value::Number)
        .unwrap_or_else(|_| Value::String(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_their_digits_both_ways() {
        let object =
            parse_object(br#"{"amount": 79.99, "big": 12345678901234567890.123}"#).unwrap();
        let fields = Fields::new(&object);
        let amount = fields.decimal("amount", &object["amount"]).unwrap();
        assert_eq!(amount.to_string(), "79.99");
        let big = fields.decimal("big", &object["big"]).unwrap();
        assert_eq!(big.to_string(), "12345678901234567890.123");
        assert_eq!(decimal_to_json(amount).to_string(), "79.99");
    }

    #[test]
    fn nested_errors_name_the_path() {
        let object = parse_object(br#"{"referral": {"advocatePoints": "x"}}"#).unwrap();
        let fields = Fields::new(&object);
        let referral = fields.optional_object("referral").unwrap().unwrap();
        let error = referral.optional_i64("advocatePoints", 0..=10).unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidField { field, .. } if field == "referral.advocatePoints")
        );
    }

    #[test]
    fn strings_with_nul_are_invalid_fields() {
        let object = parse_object(br#"{"name": "a\u0000b", "ok": "ab"}"#).unwrap();
        let fields = Fields::new(&object);
        for error in [
            fields.required_str("name").unwrap_err(),
            fields.optional_str("name").unwrap_err(),
        ] {
            assert!(matches!(error, ApiError::InvalidField { field, .. } if field == "name"));
        }
        assert_eq!(fields.required_str("ok").unwrap(), "ab");
        assert!(matches!(
            fields.required_str("missing").unwrap_err(),
            ApiError::InvalidField { message, .. } if message == "is required"
        ));
    }

    #[test]
    fn unknown_fields_are_named() {
        let object = parse_object(br#"{"points": 1, "reasn": "typo"}"#).unwrap();
        let error = Fields::new(&object)
            .only(&["points", "reason"])
            .unwrap_err();
        assert!(matches!(error, ApiError::InvalidField { field, .. } if field == "reasn"));
        assert!(Fields::new(&object).only(&["points", "reasn"]).is_ok());
        assert!(parse_optional_object(b" \n").unwrap().is_empty());
        assert!(parse_optional_object(b" null ").unwrap().is_empty());
        assert!(parse_optional_object(b"[]").is_err());
    }

    #[test]
    fn large_integer_ids_keep_every_digit() {
        let object = parse_object(br#"{"id": 820982911946154508}"#).unwrap();
        assert_eq!(
            Fields::new(&object).required_id("id").unwrap(),
            "820982911946154508"
        );
    }
}
