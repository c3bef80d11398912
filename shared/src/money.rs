//! Exact money: a `Decimal` amount and an ISO 4217 currency. No floating point anywhere.

use std::{fmt, str::FromStr};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Why an amount or currency was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    /// Not a number, or not exactly representable (more than 28 significant digits).
    #[error("must be a positive number or decimal string")]
    NotADecimal,
    /// Zero or negative.
    #[error("must be greater than zero")]
    NotPositive,
    /// Larger than any real order.
    #[error("must be at most 1000000000000")]
    TooLarge,
    /// Not an active ISO 4217 code.
    #[error("must be an ISO 4217 currency code such as USD")]
    UnknownCurrency,
}

/// The largest amount accepted; keeps every points computation far from `i64` overflow.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0); // 10^12

/// An active ISO 4217 currency code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// US dollars, the default currency of contests and purchases.
    pub const USD: Currency = Currency(*b"USD");

    /// Parses a code, accepting any letter case (Stripe sends `usd`).
    pub fn parse(raw: &str) -> Result<Self, MoneyError> {
        let upper = raw.trim().to_ascii_uppercase();
        let bytes: [u8; 3] = upper
            .as_bytes()
            .try_into()
            .map_err(|_| MoneyError::UnknownCurrency)?;
        if ISO_4217.iter().any(|(code, _)| code.as_bytes() == bytes) {
            Ok(Self(bytes))
        } else {
            Err(MoneyError::UnknownCurrency)
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from the ASCII table below.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point in the currency's minor unit (2 for USD, 0 for JPY, 3 for KWD).
    pub fn minor_unit_exponent(&self) -> u32 {
        ISO_4217
            .iter()
            .find(|(code, _)| code.as_bytes() == self.0)
            .map(|(_, exponent)| *exponent)
            .unwrap_or(2)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A positive amount in a currency, exact to the digit it was sent with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// The amount in major units (`79.99`), as sent: never rounded.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// The currency the amount is in.
    pub currency: Currency,
}

impl Money {
    /// Builds a checked amount (positive, at most [`MAX_AMOUNT`]).
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if amount <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        if amount > MAX_AMOUNT {
            return Err(MoneyError::TooLarge);
        }
        // The scale is kept as sent ("79.90" stays "79.90"): it is echoed back in lookups.
        Ok(Self { amount, currency })
    }

    /// Builds an amount from integer minor units (`7999` cents → `79.99`) using the currency's exponent.
    pub fn from_minor(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        Self::new(
            Decimal::new(minor, currency.minor_unit_exponent()),
            currency,
        )
    }
}

/// Parses an exact decimal from the text of a JSON number or string (`"79.99"`, `79.99`, `1e2`).
///
/// The JSON layer keeps numbers as their original text (`arbitrary_precision`), so `79.99` never
/// passes through a binary float.
pub fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
    let text = text.trim();
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    if !plain {
        return Err(MoneyError::NotADecimal);
    }
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    };
    parsed.map_err(|_| MoneyError::NotADecimal)
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Active ISO 4217 codes with their minor-unit exponent (fund and precious-metal codes excluded).
const ISO_4217: &[(&str, u32)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_parsed_exactly() {
        assert_eq!(parse_decimal("79.99").unwrap().to_string(), "79.99");
        assert_eq!(parse_decimal("1.005").unwrap().to_string(), "1.005");
        assert_eq!(parse_decimal("1e2").unwrap(), Decimal::from(100));
        assert_eq!(
            parse_decimal("0.1").unwrap() + parse_decimal("0.2").unwrap(),
            parse_decimal("0.3").unwrap()
        );
        for bad in ["", "abc", "1,5", "0x10", "NaN", "Infinity", "1.2.3", " "] {
            assert_eq!(parse_decimal(bad), Err(MoneyError::NotADecimal), "{bad:?}");
        }
    }

    #[test]
    fn money_must_be_positive_and_bounded() {
        let usd = Currency::USD;
        assert_eq!(Money::new(Decimal::ZERO, usd), Err(MoneyError::NotPositive));
        assert_eq!(
            Money::new(Decimal::from(-1), usd),
            Err(MoneyError::NotPositive)
        );
        assert_eq!(MAX_AMOUNT, Decimal::from(1_000_000_000_000i64));
        assert!(Money::new(MAX_AMOUNT, usd).is_ok());
        assert_eq!(
            Money::new(MAX_AMOUNT + Decimal::ONE, usd),
            Err(MoneyError::TooLarge)
        );
    }

    #[test]
    fn currencies_use_their_real_exponent() {
        let jpy = Currency::parse("jpy").unwrap();
        assert_eq!(jpy.as_str(), "JPY");
        assert_eq!(
            Money::from_minor(500, jpy).unwrap().amount,
            Decimal::from(500)
        );
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(
            Money::from_minor(1234, kwd).unwrap().amount.to_string(),
            "1.234"
        );
        assert_eq!(
            Money::from_minor(7999, Currency::USD)
                .unwrap()
                .amount
                .to_string(),
            "79.99"
        );
        assert_eq!(Currency::parse("XYZ"), Err(MoneyError::UnknownCurrency));
        assert_eq!(Currency::parse("US"), Err(MoneyError::UnknownCurrency));
    }
}
