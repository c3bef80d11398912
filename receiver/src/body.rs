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
use serde::de::DeserializeOwned;
use serde_json::Value;

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

/// Reads a webhook body into `T`: unknown fields are ignored (webhook bodies are written by other
/// systems), and the first invalid field is `400` naming it (dotted for nested fields).
///
/// The typed parse runs straight from the bytes; only a refused body is read a second time, as a
/// JSON value with its path tracked, to name the field that failed. A body that is not JSON, or
/// not a JSON object, is `400 invalid_json`.
pub fn lenient<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // A derived struct also reads an array of its fields in order; a body must be an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match object(bytes) {
            Ok(_) => ApiError::MalformedJson("expected a JSON object".into()),
            Err(error) => error,
        });
    }
    match serde_json::from_slice::<T>(bytes) {
        Ok(body) => Ok(body),
        Err(_) => tracked(object(bytes)?),
    }
}

/// Reads an admin body into `T`, whose types refuse unknown fields (`deny_unknown_fields`): an
/// unknown or misspelled field, nested ones included, is `400` naming it
/// (`referral.advocatePont`), like any invalid field, so a typo never silently changes nothing.
pub fn strict<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // The same reading as `lenient`; strictness lives in the types.
    lenient(bytes)
}

/// [`strict`] for a body that may be left out: no body (or only whitespace) and JSON `null` read
/// as `{}`.
pub fn strict_or_empty<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
        return strict(b"{}");
    }
    strict(bytes)
}

/// The body as a JSON object, or `400 invalid_json`.
fn object(bytes: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(ApiError::MalformedJson("expected a JSON object".into())),
        Err(error) => Err(ApiError::MalformedJson(error.to_string())),
    }
}

/// Reads `T` from a JSON value, tracking where it is, so a refusal names the field: `400` with
/// `field` the dotted path and the field type's own message.
fn tracked<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let field = error.path().to_string();
        // Deserialised from a value, not text: the message carries no line and column.
        let message = error.into_inner().to_string();
        if field == "." {
            ApiError::MalformedJson(message)
        } else {
            ApiError::field(field, message)
        }
    })
}

/// Turns an exact decimal into a JSON number without going through a float (`1.50` → `1.5`).
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

    use serde::Deserialize;

    use crate::api::fields::{ExactDecimal, IdText, Object, Text, WholeNumber};

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Loose {
        #[serde(default)]
        name: Option<Text>,
        #[serde(default)]
        amount: Option<ExactDecimal>,
        #[serde(default)]
        order_id: Option<IdText>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)] // read only to be refused
    struct Strict {
        #[serde(default)]
        points: Option<WholeNumber<0, 10>>,
        #[serde(default)]
        referral: Option<Object<Nested>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)] // read only to be refused
    struct Nested {
        #[serde(default)]
        advocate_points: Option<WholeNumber<0, 10>>,
    }

    fn field(error: ApiError) -> String {
        match error {
            ApiError::InvalidField { field, .. } => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn decimals_and_ids_keep_their_digits() {
        let body: Loose =
            lenient(br#"{"amount": 79.99, "orderId": 820982911946154508, "unknown": [1, 2]}"#)
                .unwrap();
        assert_eq!(body.amount.unwrap().0.to_string(), "79.99");
        assert_eq!(body.order_id.unwrap().0, "820982911946154508");
        assert!(body.name.is_none());
        assert_eq!(decimal_to_json(Decimal::new(150, 2)).to_string(), "1.5");
        let error = lenient::<Loose>(br#"{"amount": 12345678901234567890.123}"#).unwrap_err();
        assert_eq!(field(error), "amount");
    }

    #[test]
    fn errors_name_the_field_and_keep_its_message() {
        let error = lenient::<Loose>(br#"{"name": 5}"#).unwrap_err();
        assert!(
            matches!(&error, ApiError::InvalidField { field, message } if field == "name" && message == "must be a string"),
            "{error:?}"
        );
        let error = strict::<Strict>(br#"{"referral": {"advocatePoints": "x"}}"#).unwrap_err();
        assert_eq!(field(error), "referral.advocatePoints");
        // A nested object sent as an array of its fields is refused, naming it.
        let error = strict::<Strict>(br#"{"referral": [1]}"#).unwrap_err();
        assert!(
            matches!(&error, ApiError::InvalidField { field, message } if field == "referral" && message.contains("an object")),
            "{error:?}"
        );
    }

    #[test]
    fn strict_bodies_name_unknown_fields_nested_too() {
        assert_eq!(
            field(strict::<Strict>(br#"{"pointz": 1}"#).unwrap_err()),
            "pointz"
        );
        let error = strict::<Strict>(br#"{"referral": {"advocatePont": 1}}"#).unwrap_err();
        assert!(
            matches!(&error, ApiError::InvalidField { field, message } if field == "referral.advocatePont" && message.contains("advocatePoints")),
            "{error:?}"
        );
        // Lenient bodies ignore them.
        assert!(lenient::<Loose>(br#"{"pointz": 1}"#).is_ok());
    }

    #[test]
    fn bodies_that_are_not_objects_are_invalid_json() {
        for body in [&b"[]"[..], b"5", b"not json", b"{", b""] {
            let error = lenient::<Loose>(body).unwrap_err();
            assert!(
                matches!(error, ApiError::MalformedJson(_)),
                "{body:?}: {error:?}"
            );
        }
        assert!(strict_or_empty::<Strict>(b" \n").is_ok());
        assert!(strict_or_empty::<Strict>(b" null ").is_ok());
        assert!(strict_or_empty::<Strict>(b"[]").is_err());
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
}
