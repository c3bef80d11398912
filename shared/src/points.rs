//! Points arithmetic: the one place an amount becomes points.
//!
//! `points = round(amountInContestCurrency × pointsPerUnit)` with the contest's rounding, all in
//! `Decimal`, so 79.99 at 1 point per unit is exactly 80 and 1.005 × 100 is exactly 100.5 → 101.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};

/// How a fractional number of points becomes a whole one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
}

impl AwardStatus {
    /// The name stored in the database and shown in lookups.
    pub fn as_str(self) -> &'static str {
        match self {
            AwardStatus::Awarded => "awarded",
            AwardStatus::UnconvertibleCurrency => "unconvertible_currency",
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
    /// Amounts are capped at 10^12 and rates validated on the way in, so overflow cannot happen in
    /// practice; should it, the purchase is recorded like an unconvertible one instead of panicking.
    pub fn award_with(&self, money: &Money, per_unit: Decimal) -> Award {
        let unconvertible = Award {
            points: 0,
            status: AwardStatus::UnconvertibleCurrency,
        };
        let Some(converted) = self.convert(money) else {
            return unconvertible;
        };
        let Some(points) = converted
            .checked_mul(per_unit)
            .map(|raw| self.rounding.apply(raw))
            .and_then(|rounded| i64::try_from(rounded).ok())
        else {
            return unconvertible;
        };
        Award {
            points,
            status: AwardStatus::Awarded,
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
        assert_eq!(award.status, AwardStatus::UnconvertibleCurrency);
    }
}
