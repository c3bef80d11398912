//! Points arithmetic: the one place an amount becomes points.
//!
//! `points = round(amountInContestCurrency × pointsPerUnit)` with the contest's rounding, all in
//! `Decimal`, so 79.99 at 1 point per unit is exactly 80 and 1.005 × 100 is exactly 100.5 → 101.
//!
//! Points never wrap: no single award and no entry total may go beyond ±[`POINTS_LIMIT`]
//! ([`within_limit`], [`checked_total`]); what would is recorded with status `points_limit` and
//! changes nothing.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};

/// The most points (either sign) one award or one entry may hold: 9·10^15, far below
/// `i64::MAX` (≈ 9.2·10^18), so sums of a few limited values can never wrap.
pub const POINTS_LIMIT: i64 = 9_000_000_000_000_000;

/// True when `points` is within ±[`POINTS_LIMIT`].
pub fn within_limit(points: i64) -> bool {
    (-POINTS_LIMIT..=POINTS_LIMIT).contains(&points)
}

/// `total + delta` when both it and `delta` are within ±[`POINTS_LIMIT`], else `None`.
pub fn checked_total(total: i64, delta: i64) -> Option<i64> {
    if !within_limit(delta) {
        return None;
    }
    total.checked_add(delta).filter(|sum| within_limit(*sum))
}

/// How a fractional number of points becomes a whole one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Rounding {
    /// Half away from zero: 0.5 → 1, 79.5 → 80.
    #[default]
    Nearest,
    /// Towards negative infinity: 79.99 → 79.
    Floor,
    /// Towards positive infinity: 79.01 → 80.
    Ceil,
}

impl Rounding {
    /// The name stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Rounding::Nearest => "nearest",
            Rounding::Floor => "floor",
            Rounding::Ceil => "ceil",
        }
    }

    /// Parses the stored or API name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "nearest" => Some(Rounding::Nearest),
            "floor" => Some(Rounding::Floor),
            "ceil" => Some(Rounding::Ceil),
            _ => None,
        }
    }

    /// Rounds to a whole number of points.
    pub fn apply(self, value: Decimal) -> Decimal {
        match self {
            Rounding::Nearest => {
                value.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
            }
            Rounding::Floor => value.floor(),
            Rounding::Ceil => value.ceil(),
        }
    }
}

/// The outcome of pricing one purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AwardStatus {
    /// Points were computed (possibly 0).
    Awarded,
    /// The contest has no exchange rate for the purchase's currency: recorded with 0 points.
    UnconvertibleCurrency,
    /// The award, or the buyer's total with it, would be beyond ±[`POINTS_LIMIT`]: recorded
    /// with 0 points.
    PointsLimit,
}

impl AwardStatus {
    /// The name stored in the database and shown in lookups.
    pub fn as_str(self) -> &'static str {
        match self {
            AwardStatus::Awarded => "awarded",
            AwardStatus::UnconvertibleCurrency => "unconvertible_currency",
            AwardStatus::PointsLimit => "points_limit",
        }
    }

    /// Parses the stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "awarded" => Some(AwardStatus::Awarded),
            "unconvertible_currency" => Some(AwardStatus::UnconvertibleCurrency),
            "points_limit" => Some(AwardStatus::PointsLimit),
            _ => None,
        }
    }
}

/// A purchase's current status: its [`AwardStatus`] until money goes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PurchaseStatus {
    /// Points were computed (possibly 0).
    Awarded,
    /// No exchange rate: 0 points.
    UnconvertibleCurrency,
    /// Beyond the points limit: 0 points.
    PointsLimit,
    /// Some of the money was refunded; points taken back in proportion.
    PartiallyRefunded,
    /// All of the money was refunded (or more); all points taken back.
    Refunded,
    /// A chargeback is open (or lost): all points taken back.
    Reversed,
}

impl PurchaseStatus {
    /// The name stored in the database and shown in lookups.
    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseStatus::Awarded => "awarded",
            PurchaseStatus::UnconvertibleCurrency => "unconvertible_currency",
            PurchaseStatus::PointsLimit => "points_limit",
            PurchaseStatus::PartiallyRefunded => "partially_refunded",
            PurchaseStatus::Refunded => "refunded",
            PurchaseStatus::Reversed => "reversed",
        }
    }

    /// Parses the stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "awarded" => Some(PurchaseStatus::Awarded),
            "unconvertible_currency" => Some(PurchaseStatus::UnconvertibleCurrency),
            "points_limit" => Some(PurchaseStatus::PointsLimit),
            "partially_refunded" => Some(PurchaseStatus::PartiallyRefunded),
            "refunded" => Some(PurchaseStatus::Refunded),
            "reversed" => Some(PurchaseStatus::Reversed),
            _ => None,
        }
    }
}

impl From<AwardStatus> for PurchaseStatus {
    fn from(status: AwardStatus) -> Self {
        match status {
            AwardStatus::Awarded => PurchaseStatus::Awarded,
            AwardStatus::UnconvertibleCurrency => PurchaseStatus::UnconvertibleCurrency,
            AwardStatus::PointsLimit => PurchaseStatus::PointsLimit,
        }
    }
}

/// Points computed for one purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Award {
    /// Whole points to add to the buyer's entry.
    pub points: i64,
    /// Whether the amount could be converted.
    pub status: AwardStatus,
}

/// The contest settings points depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsRule<'a> {
    /// The contest's currency.
    pub currency: Currency,
    /// Points per one unit of the contest currency.
    pub points_per_unit: Decimal,
    /// How fractions are rounded.
    pub rounding: Rounding,
    /// Units of contest currency one unit of each other currency is worth.
    pub exchange_rates: &'a BTreeMap<Currency, Decimal>,
}

impl PointsRule<'_> {
    /// Converts `money` into the contest currency, or `None` without a rate.
    pub fn convert(&self, money: &Money) -> Option<Decimal> {
        if money.currency == self.currency {
            return Some(money.amount);
        }
        let rate = self.exchange_rates.get(&money.currency)?;
        money.amount.checked_mul(*rate)
    }

    /// Prices a purchase with `per_unit` points per unit of contest currency.
    ///
    /// An award beyond ±[`POINTS_LIMIT`] (possible: amounts up to 10^12 at up to 10^6 points per
    /// unit), or one too large for the arithmetic at all, is `PointsLimit` with 0 points.
    pub fn award_with(&self, money: &Money, per_unit: Decimal) -> Award {
        let Some(converted) = self.convert(money) else {
            return Award {
                points: 0,
                status: AwardStatus::UnconvertibleCurrency,
            };
        };
        match converted
            .checked_mul(per_unit)
            .map(|raw| self.rounding.apply(raw))
            .and_then(|rounded| i64::try_from(rounded).ok())
            .filter(|points| within_limit(*points))
        {
            Some(points) => Award {
                points,
                status: AwardStatus::Awarded,
            },
            None => Award {
                points: 0,
                status: AwardStatus::PointsLimit,
            },
        }
    }

    /// Prices a purchase for its buyer (the contest's `pointsPerUnit`).
    pub fn award(&self, money: &Money) -> Award {
        self.award_with(money, self.points_per_unit)
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn usd(amount: &str) -> Money {
        Money::new(dec(amount), Currency::USD).unwrap()
    }

    fn rule<'a>(
        per_unit: &str,
        rounding: Rounding,
        rates: &'a BTreeMap<Currency, Decimal>,
    ) -> PointsRule<'a> {
        PointsRule {
            currency: Currency::USD,
            points_per_unit: dec(per_unit),
            rounding,
            exchange_rates: rates,
        }
    }

    #[test]
    fn one_point_per_dollar_rounds_79_99_to_80() {
        let rates = BTreeMap::new();
        let award = rule("1", Rounding::Nearest, &rates).award(&usd("79.99"));
        assert_eq!(
            award,
            Award {
                points: 80,
                status: AwardStatus::Awarded
            }
        );
    }

    #[test]
    fn rounding_modes_follow_the_contract() {
        let rates = BTreeMap::new();
        let cases = [
            ("0.5", Rounding::Nearest, 1),
            ("0.49", Rounding::Nearest, 0),
            ("1.005", Rounding::Nearest, 1),
            ("79.99", Rounding::Floor, 79),
            ("79.01", Rounding::Ceil, 80),
            ("80", Rounding::Ceil, 80),
        ];
        for (amount, rounding, expected) in cases {
            let award = rule("1", rounding, &rates).award(&usd(amount));
            assert_eq!(award.points, expected, "{amount} {rounding:?}");
        }
        // 1.005 × 100 is exactly 100.5, which a float would make 100.49999…
        assert_eq!(
            rule("100", Rounding::Nearest, &rates)
                .award(&usd("1.005"))
                .points,
            101
        );
        // 0.1 points per unit (referral-style rates) stay exact too.
        assert_eq!(
            rule("0.1", Rounding::Nearest, &rates)
                .award(&usd("25"))
                .points,
            3
        );
    }

    #[test]
    fn foreign_currency_converts_through_the_rate_or_is_unconvertible() {
        let eur = Currency::parse("EUR").unwrap();
        let gbp = Currency::parse("GBP").unwrap();
        let rates = BTreeMap::from([(eur, dec("1.08"))]);
        let r = rule("1", Rounding::Nearest, &rates);
        let award = r.award(&Money::new(dec("50"), eur).unwrap());
        assert_eq!(
            award,
            Award {
                points: 54,
                status: AwardStatus::Awarded
            }
        );
        let award = r.award(&Money::new(dec("50"), gbp).unwrap());
        assert_eq!(
            award,
            Award {
                points: 0,
                status: AwardStatus::UnconvertibleCurrency
            }
        );
    }

    #[test]
    fn overflow_is_not_a_panic() {
        let rates = BTreeMap::new();
        let award =
            rule("79228162514264337593543950335", Rounding::Nearest, &rates).award(&usd("1000000"));
        assert_eq!(award.status, AwardStatus::PointsLimit);
        assert_eq!(award.points, 0);
    }

    #[test]
    fn awards_beyond_the_points_limit_award_nothing() {
        let rates = BTreeMap::new();
        let r = rule("1000000", Rounding::Nearest, &rates);
        // 9·10^9 × 10^6 = 9·10^15: exactly the limit is allowed.
        assert_eq!(
            r.award(&usd("9000000000")),
            Award {
                points: POINTS_LIMIT,
                status: AwardStatus::Awarded
            }
        );
        assert_eq!(
            r.award(&usd("9000000000.000001")),
            Award {
                points: 0,
                status: AwardStatus::PointsLimit
            }
        );
    }

    #[test]
    fn totals_are_checked_against_the_limit() {
        assert_eq!(checked_total(1, 2), Some(3));
        assert_eq!(checked_total(POINTS_LIMIT - 1, 1), Some(POINTS_LIMIT));
        assert_eq!(checked_total(POINTS_LIMIT, 1), None);
        assert_eq!(checked_total(-POINTS_LIMIT, -1), None);
        assert_eq!(checked_total(0, POINTS_LIMIT + 1), None);
        assert_eq!(checked_total(i64::MAX, i64::MAX), None);
        assert_eq!(checked_total(-5, -POINTS_LIMIT), None);
        assert_eq!(
            checked_total(POINTS_LIMIT, -POINTS_LIMIT),
            Some(0),
            "a full swing is fine"
        );
    }
}
