//! Schemas the derived ones cannot express alone: exact decimals within per-field bounds, the
//! currency codes the receiver knows, order ids, and the path parameters and headers many
//! operations share.

use serde_json::json;
use utoipa::{
    openapi::{
        schema::{ObjectBuilder, Type},
        RefOr, Schema,
    },
    IntoParams, PartialSchema, ToSchema,
};

use super::fields::{decimal_schema, IdText};

/// `pointsPerUnit` (both kinds): 0 to 10^6.
pub fn points_per_unit() -> Schema {
    decimal_schema(
        ObjectBuilder::new()
            .minimum(Some(0))
            .maximum(Some(1_000_000)),
        "Points per one unit of the contest currency, 0 to 10^6.",
        json!(1),
    )
}

/// A purchase amount: greater than 0 and at most 10^12.
pub fn amount() -> Schema {
    decimal_schema(
        ObjectBuilder::new()
            .exclusive_minimum(Some(0))
            .maximum(Some(1_000_000_000_000_i64)),
        "Amount paid in `currency`: greater than 0 and at most 10^12.",
        json!("79.99"),
    )
}

/// A refunded amount: greater than 0 and at most 10^12, like a purchase's.
pub fn refund_amount() -> Schema {
    decimal_schema(
        ObjectBuilder::new()
            .exclusive_minimum(Some(0))
            .maximum(Some(1_000_000_000_000_i64)),
        "Amount returned, in `currency`: greater than 0 and at most 10^12; absent means the \
         whole purchase.",
        json!("40.00"),
    )
}

/// An exchange rate: greater than 0 and at most 10^9.
pub fn rate() -> Schema {
    decimal_schema(
        ObjectBuilder::new()
            .exclusive_minimum(Some(0))
            .maximum(Some(1_000_000_000)),
        "Units of the contest currency one unit of this currency is worth: greater than 0 and at \
         most 10^9.",
        json!(1.08),
    )
}

/// A map from currency code to exchange rate.
pub fn exchange_rates() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(currency()))
        .additional_properties(Some(rate()))
        .description(Some(
            "Currency code → units of the contest currency one unit of it is worth. In a request \
             it replaces the whole map.",
        ))
        .examples([json!({ "EUR": 1.08 })])
        .into()
}

/// An order id sent as a string or an integer (an integer's digits are kept exactly).
pub fn order_id() -> Schema {
    let RefOr::T(Schema::OneOf(mut one_of)) = IdText::schema() else {
        unreachable!("IdText is a oneOf")
    };
    one_of.description = Some(
        "The sender's order id: 1–255 characters without control characters, or an integer \
         (kept digit for digit). With the contest and the source it is the dedupe key."
            .into(),
    );
    one_of.examples = vec![json!("A-1")];
    Schema::OneOf(one_of)
}

/// A refund id sent as a string or an integer (an integer's digits are kept exactly).
pub fn refund_id() -> Schema {
    let RefOr::T(Schema::OneOf(mut one_of)) = IdText::schema() else {
        unreachable!("IdText is a oneOf")
    };
    one_of.description = Some(
        "Names the refund or chargeback: 1–255 characters without control characters, or an \
         integer. Required with `amount` on a refund; default `full`."
            .into(),
    );
    one_of.examples = vec![json!("R-1")];
    Schema::OneOf(one_of)
}

/// An ISO 4217 code the receiver knows: the list is `shared::money::Currency`'s own, found by
/// asking it about every three-letter code.
pub struct CurrencyCode;

impl PartialSchema for CurrencyCode {
    fn schema() -> RefOr<Schema> {
        currency().into()
    }
}

impl ToSchema for CurrencyCode {
    fn name() -> std::borrow::Cow<'static, str> {
        "Currency".into()
    }
}

/// The [`CurrencyCode`] schema (`propertyNames` takes no reference, so maps inline it).
pub fn currency() -> Schema {
    let letters = || b'A'..=b'Z';
    let codes: Vec<String> = letters()
        .flat_map(|a| letters().flat_map(move |b| letters().map(move |c| [a, b, c])))
        .filter_map(|code| shared::money::Currency::parse(std::str::from_utf8(&code).ok()?).ok())
        .map(|currency| currency.to_string())
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes))
        .description(Some(
            "An active ISO 4217 currency code. Answers use upper case; requests may use any case \
             and surrounding spaces.",
        ))
        .examples([json!("USD")])
        .into()
}

/// The contest id in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ContestIdParam {
    /// The contest id, `[A-Za-z0-9_-]{1,64}`. Anything else is `404` without a lookup.
    #[param(
        rename = "contestId",
        pattern = "^[A-Za-z0-9_-]{1,64}$",
        example = "summer"
    )]
    pub contest_id: String,
}

/// The entry id in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EntryIdParam {
    /// The entry id (`ent_…`); anything else is `404` without a lookup. An erased entry is gone
    /// (`404`).
    #[param(
        rename = "entryId",
        min_length = 1,
        example = "ent_3k9q2m7x1p0s8t6v5w4x3y2z1a"
    )]
    pub entry_id: String,
}

/// Standard Webhooks signature headers (all three together, or none).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct StandardWebhooksHeaders {
    /// Standard Webhooks message id (signed).
    #[param(rename = "webhook-id")]
    pub webhook_id: Option<String>,
    /// Standard Webhooks timestamp, Unix seconds within ±5 minutes (signed).
    #[param(rename = "webhook-timestamp")]
    pub webhook_timestamp: Option<String>,
    /// Space-separated `v1,<base64 HMAC-SHA256>` entries.
    #[param(rename = "webhook-signature")]
    pub webhook_signature: Option<String>,
}

/// `Prefer` (RFC 7240) on the generic purchase, signup and refund webhooks.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct PreferHeader {
    /// `wait=N`: wait up to N seconds (capped at 4) for the worker's outcome and answer it
    /// instead of `accepted`; `wait=0` or `respond-async` answer at once even at a contest with
    /// `syncResponses`. Comma-separated preferences, RFC 7240; anything malformed is ignored.
    #[param(rename = "Prefer", example = "wait=3")]
    pub prefer: Option<String>,
}

/// The value of `Preference-Applied` on a synchronous webhook's answer: `wait=N`, the wait
/// applied.
#[derive(ToSchema)]
#[schema(pattern = "^wait=[1-4]$", example = "wait=3")]
pub struct PreferenceApplied(pub String);
