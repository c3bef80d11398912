//! Reading request bodies: what the headers declare is checked first (size, media type), then
//! the raw bytes are read within a deadline (signatures are computed over them), then JSON
//! fields one by one so every 400 names the field that is wrong.

use std::{task::Poll, time::Duration};

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{header, HeaderMap, StatusCode},
};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Largest body accepted (the contract's 1 MiB); larger ones get 413 before anything else.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long a body may take to arrive once the request's head is in. A webhook body is a few
/// kilobytes sent by a server: it arrives with the head or right after it. A client still
/// sending after this long is stalled or hostile, and holding its request slot any longer would
/// let a few thousand such clients take every slot; it gets `408`. Short enough to leave time
/// for the publisher confirm within the 4.5 s request deadline.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest declared media type quoted back in a 415.
const MAX_QUOTED_MEDIA_TYPE: usize = 100;

/// The raw request body, capped at [`MAX_BODY_BYTES`] and read within [`BODY_READ_TIMEOUT`],
/// after [`check_declared`] has passed (so a body we would refuse is never read).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_declared(request.headers())?;
        let mut read = std::pin::pin!(Bytes::from_request(request, state));
        // A body that is already here (the usual case: it came in the head's packets) is taken
        // without arming a timer; only a body still on its way gets the deadline.
        let result = match futures::poll!(read.as_mut()) {
            Poll::Ready(result) => result,
            Poll::Pending => tokio::time::timeout(BODY_READ_TIMEOUT, read)
                .await
                .map_err(|_| ApiError::BodyTimeout)?,
        };
        match result {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge)
            }
            Err(rejection) => Err(ApiError::MalformedJson(rejection.body_text())),
        }
    }
}

/// What can be refused from the headers alone, before a byte of the body is read: a declared
/// `Content-Length` over [`MAX_BODY_BYTES`] is 413 at once (whatever follows is never waited
/// for), and a body declared as something other than JSON is 415.
pub fn check_declared(headers: &HeaderMap) -> Result<(), ApiError> {
    if declares_too_large(headers) {
        return Err(ApiError::PayloadTooLarge);
    }
    check_media_type(headers)
}

/// True when `Content-Length` declares more than [`MAX_BODY_BYTES`]. An unreadable value is
/// left to hyper, which refuses it before we see the request.
pub fn declares_too_large(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
}

/// Every body we read is JSON. No `Content-Type` (or an empty one) is read as JSON, since many
/// senders set none; `application/json` and any `application/…+json` are JSON, with any
/// parameters (`; charset=utf-8`). Anything else, form-encoded above all (`curl -d` without
/// `-H 'Content-Type: application/json'`), is 415 with a hint rather than a confusing JSON error.
/// A body declared empty (`Content-Length: 0`) has nothing to misread, whatever its type.
pub fn check_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    if headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|length| length.as_bytes() == b"0")
    {
        return Ok(());
    }
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim();
    if essence.is_empty() && value.as_bytes().iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let is_json = essence.eq_ignore_ascii_case("application/json")
        || essence.split_once('/').is_some_and(|(kind, subtype)| {
            kind.eq_ignore_ascii_case("application")
                && subtype.len() > 5
                && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json")
        });
    if is_json {
        return Ok(());
    }
    let quoted =
        (!essence.is_empty() && essence.len() <= MAX_QUOTED_MEDIA_TYPE).then(|| essence.to_owned());
    Err(ApiError::UnsupportedMediaType(quoted))
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
        let object = parse_object(
            br#"{"amount": 79.99, "big": 123456789012345.678, "sci": 1.5E-3, "long": 12345678901234567890.123}"#,
        )
        .unwrap();
        let fields = Fields::new(&object);
        let amount = fields.decimal("amount", &object["amount"]).unwrap();
        assert_eq!(amount.to_string(), "79.99");
        let big = fields.decimal("big", &object["big"]).unwrap();
        assert_eq!(big.to_string(), "123456789012345.678");
        let sci = fields.decimal("sci", &object["sci"]).unwrap();
        assert_eq!(sci.to_string(), "0.0015");
        assert_eq!(decimal_to_json(amount).to_string(), "79.99");
        // More digits than we keep: refused, naming the field, never rounded.
        let error = fields.decimal("long", &object["long"]).unwrap_err();
        assert!(matches!(error, ApiError::InvalidField { field, .. } if field == "long"));
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

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn json_media_types_and_none_are_read_as_json() {
        for value in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/cloudevents+json",
            "application/vnd.shopify+JSON ; q=1",
            "",
        ] {
            assert!(
                check_media_type(&headers(&[("content-type", value)])).is_ok(),
                "{value:?}"
            );
        }
        assert!(check_media_type(&HeaderMap::new()).is_ok());
        let empty = headers(&[
            ("content-type", "application/x-www-form-urlencoded"),
            ("content-length", "0"),
        ]);
        assert!(check_media_type(&empty).is_ok());
    }

    #[test]
    fn other_media_types_are_415_with_what_was_sent() {
        for value in [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain",
            "text/json",
            "application/jsonp",
            "application/+json",
            "json",
        ] {
            let error = check_media_type(&headers(&[("content-type", value)])).unwrap_err();
            assert_eq!(
                error.status_code(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{value:?}"
            );
            let essence = value.split(';').next().unwrap().trim();
            assert!(error.to_string().contains(essence), "{error}");
            assert!(error.to_string().contains("Content-Type: application/json"));
        }
    }

    #[test]
    fn declared_lengths_over_the_cap_are_refused_unread() {
        let declared = |length: &str| declares_too_large(&headers(&[("content-length", length)]));
        assert!(!declared("0"));
        assert!(!declared(&MAX_BODY_BYTES.to_string()));
        assert!(declared(&(MAX_BODY_BYTES + 1).to_string()));
        assert!(declared("5000000000"));
        assert!(declared("18446744073709551615"));
        assert!(!declares_too_large(&HeaderMap::new()));
        let error = check_declared(&headers(&[
            ("content-length", "5000000000"),
            ("content-type", "text/plain"),
        ]))
        .unwrap_err();
        assert_eq!(error.status_code(), StatusCode::PAYLOAD_TOO_LARGE);
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
