//! Identifiers: validated at the edge, then carried as types that cannot be wrong.
//!
//! Purchase and entry ids are *derived* (a hash of what identifies them) rather than generated, so
//! every receiver answers the same `purchaseId` for the same `(contest, source, orderId)` without a
//! database round trip, and the worker can write an entry and its purchases in one pass.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::email::Email;

/// Why an identifier was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// The contest id is not `[A-Za-z0-9_-]{1,64}`.
    #[error("must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")]
    BadContestId,
    /// The order id is empty or longer than 255 characters.
    #[error("must be 1 to 255 characters")]
    BadOrderId,
    /// The order id contains a control character or an invisible formatting character (a
    /// bidirectional override, a zero-width character, …): such ids display as something other
    /// than what they are and corrupt logs and dashboards.
    #[error(
        "must not contain control or invisible formatting characters (found U+{0:04X}); \
         send the id as plain text"
    )]
    UnsafeOrderIdCharacter(u32),
    /// The source is not one of the known senders.
    #[error("must be one of api, shopify, stripe, coinflow")]
    BadSource,
}

/// A contest identifier: `[A-Za-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContestId(String);

impl ContestId {
    /// Parses a contest id, refusing anything outside `[A-Za-z0-9_-]{1,64}`.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let valid = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdError::BadContestId)
        }
    }

    /// Generates a fresh id (`c` + 24 lower-case base-36 characters, ~124 bits of randomness).
    pub fn generate() -> Self {
        Self(format!("c{}", random_base36(24)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lets a map keyed by contest id be searched with the `&str` of a URL, without allocating.
/// Consistent with `Hash` and `Eq`: a `ContestId` hashes and compares exactly as its text.
impl std::borrow::Borrow<str> for ContestId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContestId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ContestId> for String {
    fn from(value: ContestId) -> Self {
        value.0
    }
}

impl fmt::Display for ContestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sender's order identifier: 1 to 255 characters, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderId(String);

impl OrderId {
    /// Parses an order id: 1 to 255 characters (not bytes), none of them a control character
    /// or an invisible formatting character (see [`is_unsafe_in_text`]).
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let chars = raw.chars().count();
        if !(1..=255).contains(&chars) {
            return Err(IdError::BadOrderId);
        }
        if let Some(unsafe_char) = raw.chars().find(|&c| is_unsafe_in_text(c)) {
            return Err(IdError::UnsafeOrderIdCharacter(u32::from(unsafe_char)));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrderId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<OrderId> for String {
    fn from(value: OrderId) -> Self {
        value.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True for characters an identifier must not contain because they do not show as themselves:
/// control characters (C0, DEL, C1: newlines forge log lines, escapes drive terminals), the line
/// and paragraph separators, and every invisible formatting character of Unicode's category Cf:
/// bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069, which reorder
/// what a dashboard shows, "Trojan Source"), directional marks, zero-width spaces and joiners,
/// the byte order mark, invisible operators, interlinear annotations and tag characters.
pub fn is_unsafe_in_text(c: char) -> bool {
    /// Unicode 15.1's format characters (general category Cf), as inclusive ranges.
    const FORMAT: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),   // soft hyphen
        (0x0600, 0x0605),   // Arabic number signs
        (0x061C, 0x061C),   // Arabic letter mark
        (0x06DD, 0x06DD),   // Arabic end of ayah
        (0x070F, 0x070F),   // Syriac abbreviation mark
        (0x0890, 0x0891),   // Arabic pound / piastre mark above
        (0x08E2, 0x08E2),   // Arabic disputed end of ayah
        (0x180E, 0x180E),   // Mongolian vowel separator
        (0x200B, 0x200F),   // zero-width space, (non-)joiner, LRM, RLM
        (0x202A, 0x202E),   // bidirectional embeddings and overrides
        (0x2060, 0x2064),   // word joiner, invisible operators
        (0x2066, 0x206F),   // bidirectional isolates, deprecated format characters
        (0xFEFF, 0xFEFF),   // zero-width no-break space / byte order mark
        (0xFFF9, 0xFFFB),   // interlinear annotation
        (0x110BD, 0x110BD), // Kaithi number sign
        (0x110CD, 0x110CD), // Kaithi number sign above
        (0x13430, 0x1343F), // Egyptian hieroglyph format controls
        (0x1BCA0, 0x1BCA3), // shorthand format controls
        (0x1D173, 0x1D17A), // musical symbol format controls
        (0xE0001, 0xE0001), // language tag
        (0xE0020, 0xE007F), // tag characters
    ];
    let code = u32::from(c);
    c.is_control()
        || code == 0x2028
        || code == 0x2029
        || FORMAT
            .iter()
            .any(|&(first, last)| (first..=last).contains(&code))
}

/// Who sent a purchase. Part of the dedupe key: the same order number from two platforms is two
/// purchases, the same order sent to two endpoints of one platform is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Source {
    /// The generic purchase webhook (a store's own backend).
    Api,
    /// A Shopify `orders/paid` webhook.
    Shopify,
    /// A Stripe Checkout event.
    Stripe,
    /// A Coinflow `Settled` event.
    Coinflow,
}

impl Source {
    /// The name used in URLs, the database and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Shopify => "shopify",
            Source::Stripe => "stripe",
            Source::Coinflow => "coinflow",
        }
    }

    /// Parses the lower-case name.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        match raw {
            "api" => Ok(Source::Api),
            "shopify" => Ok(Source::Shopify),
            "stripe" => Ok(Source::Stripe),
            "coinflow" => Ok(Source::Coinflow),
            _ => Err(IdError::BadSource),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of one purchase, `pur_` + 26 base-32 characters of SHA-256 over its dedupe key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PurchaseId(String);

impl PurchaseId {
    /// Derives the id of `(contest, source, order)`; the same triple always gives the same id.
    pub fn derive(contest: &ContestId, source: Source, order: &OrderId) -> Self {
        Self(format!(
            "pur_{}",
            digest_id(&[contest.as_str(), source.as_str(), order.as_str()])
        ))
    }

    /// Wraps an id read back from storage.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PurchaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one contest entry, `ent_` + 26 base-32 characters of SHA-256 over `(contest, email)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EntryId(String);

impl EntryId {
    /// Derives the entry id of `email` in `contest`.
    pub fn derive(contest: &ContestId, email: &Email) -> Self {
        Self(format!(
            "ent_{}",
            digest_id(&[contest.as_str(), email.as_str()])
        ))
    }

    /// Wraps an id read back from storage or a URL (unknown ids simply find nothing).
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one reversal (refund, cancellation, chargeback or won chargeback), `rev_` + 26
/// base-32 characters of SHA-256 over its dedupe key `(contest, source, target, refundId, kind)`:
/// a redelivered or repeated reversal carries the same id (its AMQP `message_id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReversalId(String);

impl ReversalId {
    /// Derives the id of a reversal from the parts of its dedupe key, in that order.
    pub fn derive(
        contest: &ContestId,
        source: Source,
        target: &str,
        refund: &str,
        kind: &str,
    ) -> Self {
        Self(format!(
            "rev_{}",
            digest_id(&[contest.as_str(), source.as_str(), target, refund, kind])
        ))
    }

    /// Wraps an id read back from storage.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReversalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 26 characters of lower-case RFC 4648 base-32 (130 bits) of SHA-256 over the length-prefixed
/// parts; length prefixes keep `("a|b", "c")` and `("a", "b|c")` apart.
fn digest_id(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    base32_lower(&digest).chars().take(26).collect()
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32_lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn random_base36(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contest_id_accepts_the_documented_alphabet_only() {
        assert!(ContestId::parse("clx1abc123").is_ok());
        assert!(ContestId::parse("a_b-C9").is_ok());
        assert!(ContestId::parse(&"x".repeat(64)).is_ok());
        assert_eq!(ContestId::parse(""), Err(IdError::BadContestId));
        assert_eq!(
            ContestId::parse(&"x".repeat(65)),
            Err(IdError::BadContestId)
        );
        assert_eq!(ContestId::parse("a b"), Err(IdError::BadContestId));
        assert_eq!(ContestId::parse("é"), Err(IdError::BadContestId));
        assert!(ContestId::parse(ContestId::generate().as_str()).is_ok());
    }

    #[test]
    fn order_ids_with_control_or_invisible_characters_are_refused() {
        for (text, code) in [
            ("A-1\n", 0x0A),
            ("A\u{0}1", 0x00),
            ("A\u{1b}[31m", 0x1B),
            ("A\u{7f}", 0x7F),
            ("A\u{85}", 0x85),
            ("A\u{202E}1-A", 0x202E),
            ("\u{202A}A", 0x202A),
            ("A\u{2066}B\u{2069}", 0x2066),
            ("A\u{2069}", 0x2069),
            ("A\u{200B}1", 0x200B),
            ("A\u{200F}", 0x200F),
            ("\u{FEFF}A-1", 0xFEFF),
            ("A\u{2028}", 0x2028),
            ("A\u{E0041}", 0xE0041),
            ("A\u{00AD}1", 0x00AD),
        ] {
            assert_eq!(
                OrderId::parse(text),
                Err(IdError::UnsafeOrderIdCharacter(code)),
                "{text:?}"
            );
        }
        // Visible non-ASCII text is fine: accents, CJK, emoji, right-to-left letters.
        for text in ["Ordre-é", "注文-1", "🛒-42", "הזמנה-7", "A 1", "#1001"] {
            assert!(OrderId::parse(text).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn contest_ids_are_found_by_their_text() {
        let mut map = std::collections::HashMap::new();
        map.insert(ContestId::parse("summer").unwrap(), 1);
        assert_eq!(map.get("summer"), Some(&1));
        assert_eq!(map.get("winter"), None);
    }

    #[test]
    fn order_id_counts_characters() {
        assert!(OrderId::parse(&"é".repeat(255)).is_ok());
        assert_eq!(OrderId::parse(&"é".repeat(256)), Err(IdError::BadOrderId));
        assert_eq!(OrderId::parse(""), Err(IdError::BadOrderId));
    }

    #[test]
    fn purchase_id_is_deterministic_and_separates_its_parts() {
        let contest = ContestId::parse("c1").unwrap();
        let order = OrderId::parse("A-1").unwrap();
        let a = PurchaseId::derive(&contest, Source::Api, &order);
        assert_eq!(a, PurchaseId::derive(&contest, Source::Api, &order));
        assert_ne!(a, PurchaseId::derive(&contest, Source::Shopify, &order));
        assert!(a.as_str().starts_with("pur_"));
        assert_eq!(a.as_str().len(), 4 + 26);
        let c2 = ContestId::parse("c").unwrap();
        let o2 = OrderId::parse("1A-1").unwrap();
        assert_ne!(a, PurchaseId::derive(&c2, Source::Api, &o2));
    }
}
