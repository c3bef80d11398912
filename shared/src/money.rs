//! Exact money: a `Decimal` amount and an ISO 4217 currency. No floating point anywhere.

use std::{fmt, str::FromStr};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Why an amount or currency was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    /// Not a number (see [`parse_decimal`] for the accepted forms).
    #[error("must be a positive number or decimal string")]
    NotADecimal,
    /// A number with more digits than we keep: it would have to be rounded, so it is refused.
    #[error(
        "must have at most {MAX_DIGITS} significant digits and {MAX_DIGITS} digits after the \
         decimal point (it is never rounded)"
    )]
    TooManyDigits,
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
        // Every request parses a currency: no allocation, a binary search of the sorted table.
        let bytes: [u8; 3] = raw
            .trim()
            .as_bytes()
            .try_into()
            .map_err(|_| MoneyError::UnknownCurrency)?;
        let bytes = bytes.map(|b| b.to_ascii_uppercase());
        match iso_4217_index(&bytes) {
            Some(_) => Ok(Self(bytes)),
            None => Err(MoneyError::UnknownCurrency),
        }
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from the ASCII table below.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point in the currency's minor unit (2 for USD, 0 for JPY, 3 for KWD).
    pub fn minor_unit_exponent(&self) -> u32 {
        iso_4217_index(&self.0).map_or(2, |index| ISO_4217[index].1)
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

/// Most significant digits, and most digits after the decimal point, of any decimal we accept.
///
/// Eighteen digits hold every real amount (up to [`MAX_AMOUNT`] with six decimals, or a
/// crypto-style amount with 18 decimals) and keep every product the worker computes from them
/// well inside `Decimal`'s 28 digits; a value that needs more is refused rather than rounded.
pub const MAX_DIGITS: u32 = 18;

/// Largest exponent magnitude looked at: any non-zero value beyond it has more than
/// [`MAX_DIGITS`] digits anyway, so clamping changes no decision and no arithmetic can overflow.
const MAX_EXPONENT: i64 = 1_000;

/// Parses an exact decimal from the text of a JSON number or string, or refuses it: a number is
/// never rounded.
///
/// Accepted forms (surrounding whitespace is ignored): an optional sign, digits with an optional
/// decimal point (`79.99`, `5.`, `.5`), and an optional exponent (`1e2`, `1.5E-3`, `2e+1`).
/// The value is held exactly when, written out in plain notation, it has at most
/// [`MAX_DIGITS`] significant digits and at most [`MAX_DIGITS`] digits after the decimal point;
/// otherwise it is [`MoneyError::TooManyDigits`]. The digits after the point are kept as sent
/// (`79.90` stays `79.90`; `1.50e1` is `15.0`, `1e2` is `100`, `1.5E-3` is `0.0015`).
///
/// The JSON layer keeps numbers as their original text (`arbitrary_precision`), so `79.99` never
/// passes through a binary float on its way here.
pub fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
    let text = text.trim();
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, parse_exponent(exponent)?),
        None => (unsigned, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (integer.is_empty() && fraction.is_empty()) || !all_digits(integer) || !all_digits(fraction)
    {
        return Err(MoneyError::NotADecimal);
    }

    // The digits as written, and where the point falls among them once the exponent moves it.
    let digits = || integer.bytes().chain(fraction.bytes());
    let written = (integer.len() + fraction.len()) as i64;
    let point = integer.len() as i64 + exponent;
    // Digits after the point: those written right of it (an exponent may also append zeros on
    // the left of a fraction: `1e-3` is `0.001`).
    let scale = (written - point).max(0);
    // Significant digits: from the first non-zero digit to the last one, including the zeros a
    // positive exponent appends (`1e20` is 21 digits written out).
    let leading_zeros = digits().take_while(|&b| b == b'0').count() as i64;
    let significant = if leading_zeros == written {
        0
    } else {
        written.max(point) - leading_zeros
    };
    if significant > i64::from(MAX_DIGITS) || scale > i64::from(MAX_DIGITS) {
        return Err(MoneyError::TooManyDigits);
    }

    // At most 18 significant digits: the unscaled value fits in an i64 with room to spare.
    let mut unscaled: i64 = 0;
    for digit in digits() {
        unscaled = unscaled * 10 + i64::from(digit - b'0');
    }
    for _ in written..point {
        unscaled *= 10;
    }
    if negative {
        unscaled = -unscaled;
    }
    // `scale` ≤ 18 < 28, Decimal's largest.
    Ok(Decimal::new(unscaled, scale as u32))
}

/// The exponent after `e`/`E`: an optional sign and at least one digit, clamped to
/// ±[`MAX_EXPONENT`].
fn parse_exponent(text: &str) -> Result<i64, MoneyError> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MoneyError::NotADecimal);
    }
    let mut magnitude: i64 = 0;
    for digit in digits.bytes() {
        magnitude = (magnitude * 10 + i64::from(digit - b'0')).min(MAX_EXPONENT);
    }
    Ok(if negative { -magnitude } else { magnitude })
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Where `code` is in [`ISO_4217`] (sorted by code), if it is there.
fn iso_4217_index(code: &[u8; 3]) -> Option<usize> {
    ISO_4217
        .binary_search_by(|(known, _)| known.as_bytes().cmp(code.as_slice()))
        .ok()
}

/// Active ISO 4217 codes with their minor-unit exponent (fund and precious-metal codes excluded),
/// sorted by code: [`iso_4217_index`] searches it by bisection.
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

    fn parsed(text: &str) -> String {
        parse_decimal(text)
            .unwrap_or_else(|error| panic!("{text:?}: {error}"))
            .to_string()
    }

    #[test]
    fn the_currency_table_is_sorted_and_every_code_is_found() {
        assert!(ISO_4217.windows(2).all(|pair| pair[0].0 < pair[1].0));
        for (code, exponent) in ISO_4217 {
            let currency = Currency::parse(&code.to_ascii_lowercase()).unwrap();
            assert_eq!(
                (currency.as_str(), currency.minor_unit_exponent()),
                (*code, *exponent)
            );
        }
        for unknown in ["", "US", "USDT", "ZZZ", "AAA", " u s"] {
            assert!(Currency::parse(unknown).is_err(), "{unknown:?}");
        }
    }

    #[test]
    fn decimals_are_parsed_exactly() {
        assert_eq!(parsed("79.99"), "79.99");
        assert_eq!(parsed("79.90"), "79.90");
        assert_eq!(parsed(" 1.005 "), "1.005");
        assert_eq!(parsed("-12.5"), "-12.5");
        assert_eq!(parsed("+7"), "7");
        assert_eq!(parsed("5."), "5");
        assert_eq!(parsed(".5"), "0.5");
        assert_eq!(parsed("007.50"), "7.50");
        assert_eq!(
            parse_decimal("0.1").unwrap() + parse_decimal("0.2").unwrap(),
            parse_decimal("0.3").unwrap()
        );
        // A float's shortest text is held digit for digit, not "fixed".
        assert_eq!(parsed("0.30000000000000004"), "0.30000000000000004");
    }

    #[test]
    fn scientific_notation_is_exact() {
        assert_eq!(parsed("1e2"), "100");
        assert_eq!(parsed("1E+2"), "100");
        assert_eq!(parsed("1.5E-3"), "0.0015");
        assert_eq!(parsed("1.50e1"), "15.0");
        assert_eq!(parsed("7999e-2"), "79.99");
        assert_eq!(parsed("0.0015e3"), "1.5");
        assert_eq!(parsed("1e17"), "100000000000000000");
        assert_eq!(parsed("1e-18"), "0.000000000000000001");
        assert_eq!(parsed("0e999999999999999999999"), "0");
    }

    #[test]
    fn more_digits_than_we_keep_are_refused_never_rounded() {
        for text in [
            "1234567890123456789",   // 19 significant digits
            "1.234567890123456789",  // 19 significant digits
            "0.0000000000000000001", // 19 decimals
            "1e-19",                 // 19 decimals
            "1e18",                  // 19 digits written out
            "1E+20",
            "1.0000000000000002e-05", // a float's text: 21 decimals
            "79.990000000000000000",  // 18 decimals but 20 digits
            "12345678901234567890.123",
            "1e999999999999999999999",
            "-1e-1000",
            "0e-19",
        ] {
            assert_eq!(
                parse_decimal(text),
                Err(MoneyError::TooManyDigits),
                "{text:?}"
            );
        }
        assert_eq!(parsed("123456789012345678"), "123456789012345678");
        assert_eq!(parsed("0.123456789012345678"), "0.123456789012345678");
        assert_eq!(parsed("123456789012.123456"), "123456789012.123456");
    }

    #[test]
    fn anything_else_is_not_a_decimal() {
        for text in [
            "", " ", "abc", "1,5", "0x10", "NaN", "nan", "Infinity", "-inf", "1.2.3", ".", "-",
            "+", "e5", ".e5", "1e", "1e+", "1e1.5", "1e--1", "--1", "+-1", "1_000", "1 000", "١٢",
            "１", "1e5e5", "1-2", "0b1",
        ] {
            assert_eq!(
                parse_decimal(text),
                Err(MoneyError::NotADecimal),
                "{text:?}"
            );
        }
    }

    /// Moves the decimal point of `digits` (an integer part and a fraction) by `exponent` with
    /// plain string operations, the way a person would: the reference the parser must match.
    fn by_hand(integer: &str, fraction: &str, exponent: i64) -> (String, usize, usize) {
        let digits = format!("{integer}{fraction}");
        let point = integer.len() as i64 + exponent;
        let (mut int_part, frac_part) = if point <= 0 {
            (
                String::new(),
                format!("{}{digits}", "0".repeat((-point) as usize)),
            )
        } else if point as usize >= digits.len() {
            (
                format!("{digits}{}", "0".repeat(point as usize - digits.len())),
                String::new(),
            )
        } else {
            let (a, b) = digits.split_at(point as usize);
            (a.to_owned(), b.to_owned())
        };
        int_part = int_part.trim_start_matches('0').to_owned();
        let all = format!("{int_part}{frac_part}");
        let significant = all.trim_start_matches('0').len();
        let text = match (int_part.is_empty(), frac_part.is_empty()) {
            (true, true) => "0".to_owned(),
            (true, false) => format!("0.{frac_part}"),
            (false, true) => int_part,
            (false, false) => format!("{int_part}.{frac_part}"),
        };
        (text, significant, frac_part.len())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Every well-formed number is either held exactly (equal, digit for digit, to the point
        /// moved by hand) or refused as too long; which one depends only on its digit counts.
        #[test]
        fn well_formed_numbers_are_exact_or_refused(
            negative in proptest::bool::ANY,
            integer in "[0-9]{0,22}",
            fraction in proptest::option::of("[0-9]{0,22}"),
            exponent in proptest::option::of((-40i64..40, "[eE]", "[-+]?")),
        ) {
            let fraction_text = fraction.clone().unwrap_or_default();
            proptest::prop_assume!(!integer.is_empty() || !fraction_text.is_empty());
            let mut text = String::new();
            if negative { text.push('-'); }
            text.push_str(&integer);
            if let Some(fraction) = &fraction { text.push('.'); text.push_str(fraction); }
            let shift = match &exponent {
                Some((value, letter, sign)) => {
                    let value = match sign.as_str() {
                        "-" => -value.abs(),
                        "+" => value.abs(),
                        _ => *value,
                    };
                    text.push_str(letter);
                    if sign == "+" { text.push('+'); }
                    if value < 0 { text.push('-'); }
                    text.push_str(&value.abs().to_string());
                    value
                }
                None => 0,
            };
            let (expected, significant, decimals) = by_hand(&integer, &fraction_text, shift);
            let result = parse_decimal(&text);
            if significant > MAX_DIGITS as usize || decimals > MAX_DIGITS as usize {
                proptest::prop_assert_eq!(result, Err(MoneyError::TooManyDigits), "{}", text);
            } else {
                let value = result.map_err(|error| proptest::test_runner::TestCaseError::fail(format!("{text}: {error}")))?;
                let unsigned = if value.is_sign_negative() { value.to_string()[1..].to_owned() } else { value.to_string() };
                proptest::prop_assert_eq!(&unsigned, &expected, "{}", text);
                proptest::prop_assert_eq!(value.is_sign_negative(), negative && !value.is_zero(), "{}", text);
                proptest::prop_assert_eq!(value.scale() as usize, decimals, "{}", text);
            }
        }

        /// Every decimal we can hold reads back as itself from its own text.
        #[test]
        fn held_values_round_trip(unscaled in -999_999_999_999_999_999i64..=999_999_999_999_999_999, scale in 0u32..=18) {
            let value = Decimal::new(unscaled, scale);
            let back = parse_decimal(&value.to_string()).unwrap();
            proptest::prop_assert_eq!(back, value);
            proptest::prop_assert_eq!(back.scale(), scale);
        }

        /// Arbitrary text never panics: it is a decimal or one of the two refusals.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}|[-+0-9.eE ]{0,40}") {
            let _ = parse_decimal(&text);
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
