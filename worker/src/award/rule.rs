//! The reversal rule, as pure arithmetic: how a purchase's refunds and chargebacks decide the
//! points it has lost.
//!
//! Per purchase the state is the refunded total and the chargebacks seen (and which of them were
//! won). From it alone:
//! `reversed = points` while any chargeback is active (not won), else
//! `round(points × min(refunded, amount) / amount)` with the contest's rounding, computed
//! exactly (no division rounding), so partial refunds adding up to the amount land on exactly
//! the points of one refund of the whole. The same rule applies to the referral credit the
//! purchase earned, on the credit's points. Because the target depends only on the state, and
//! the state only on which reversals were applied, every order of arrival ends the same.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use shared::{
    event::{RefundAmount, ReversalKind},
    points::{AwardStatus, PurchaseStatus, Rounding},
};

/// Why a reversal could not be folded into a purchase's state (the state is left unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The refund names a currency other than the purchase's.
    CurrencyMismatch,
    /// The refunded total does not fit the arithmetic (absurd amounts).
    OutOfRange,
}

/// What a purchase's reversals have done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReversalState {
    /// The purchase amount, as sent (> 0).
    pub amount: Decimal,
    /// Its currency code (upper case).
    pub currency: String,
    /// The status it was recorded with.
    pub award_status: AwardStatus,
    /// The sum of the partial refunds received.
    pub partial_sum: Decimal,
    /// The largest cumulative refunded total received (Stripe's `amount_refunded`).
    pub cumulative_max: Decimal,
    /// Whether a whole-purchase refund (or cancellation) was received.
    pub fully_refunded: bool,
    /// Refund ids of the chargebacks applied.
    pub chargebacks: BTreeSet<String>,
    /// Refund ids of the chargebacks won (a win may arrive before its chargeback).
    pub won: BTreeSet<String>,
}

impl ReversalState {
    /// Folds one reversal in. A `Partial` refund adds to the partial sum, `Full` marks the
    /// purchase refunded whole, `Cumulative` raises the largest total seen; a chargeback becomes
    /// active unless already won; a win deactivates the chargeback with the same refund id. Every
    /// step is commutative, so the state (and [`ReversalState::refunded`]) does not depend on the
    /// order reversals arrive in.
    pub fn absorb(
        &mut self,
        kind: ReversalKind,
        refund_id: &str,
        amount: &RefundAmount,
    ) -> Result<(), Refused> {
        match kind {
            ReversalKind::Chargeback => {
                self.chargebacks.insert(refund_id.to_owned());
            }
            ReversalKind::ChargebackWon => {
                self.won.insert(refund_id.to_owned());
            }
            ReversalKind::Refund => match amount {
                RefundAmount::Full => self.fully_refunded = true,
                RefundAmount::Partial { amount, currency } => {
                    if currency
                        .as_ref()
                        .is_some_and(|c| c.as_str() != self.currency)
                    {
                        return Err(Refused::CurrencyMismatch);
                    }
                    self.partial_sum = self
                        .partial_sum
                        .checked_add((*amount).max(Decimal::ZERO))
                        .ok_or(Refused::OutOfRange)?;
                }
                RefundAmount::Cumulative { amount, currency } => {
                    if currency.as_str() != self.currency {
                        return Err(Refused::CurrencyMismatch);
                    }
                    self.cumulative_max = self.cumulative_max.max(*amount);
                }
            },
        }
        Ok(())
    }

    /// Folds back in a reversal applied earlier, as stored (`kind`, `amount_type` and `amount`
    /// columns of the reversals table; its currency was checked when it was applied).
    pub fn restore(
        &mut self,
        kind: &str,
        refund_id: String,
        amount_type: &str,
        amount: Option<Decimal>,
    ) {
        match kind {
            "chargeback" => {
                self.chargebacks.insert(refund_id);
            }
            "chargeback_won" => {
                self.won.insert(refund_id);
            }
            _ => match (amount_type, amount) {
                ("partial", Some(amount)) => {
                    // Stored sums were in range when applied; saturate rather than fail later.
                    self.partial_sum = self
                        .partial_sum
                        .checked_add(amount.max(Decimal::ZERO))
                        .unwrap_or(Decimal::MAX);
                }
                ("cumulative", Some(amount)) => {
                    self.cumulative_max = self.cumulative_max.max(amount);
                }
                _ => self.fully_refunded = true,
            },
        }
    }

    /// The total refunded: the sum of the partial refunds, or the largest cumulative total, or
    /// the whole amount after a full refund, whichever is largest. Partial refunds of one sender
    /// add up (they are distinct refunds); a full refund means "everything", not "everything
    /// more", so a partial refund followed by a full one (or the reverse) shows the amount
    /// either way.
    pub fn refunded(&self) -> Decimal {
        let full = if self.fully_refunded {
            self.amount
        } else {
            Decimal::ZERO
        };
        self.partial_sum.max(self.cumulative_max).max(full)
    }

    /// True while a chargeback is open or lost (not won).
    pub fn chargeback_active(&self) -> bool {
        self.chargebacks.iter().any(|id| !self.won.contains(id))
    }

    /// How many of `points` (a purchase's award or its referral credit, ≥ 0) the state takes
    /// back; `None` only for amounts beyond the arithmetic.
    pub fn reversed(&self, points: i64, rounding: Rounding) -> Option<i64> {
        if self.chargeback_active() {
            return Some(points);
        }
        proportion(
            points,
            self.refunded().min(self.amount),
            self.amount,
            rounding,
        )
    }

    /// The purchase's status in this state.
    pub fn status(&self) -> PurchaseStatus {
        if self.chargeback_active() {
            PurchaseStatus::Reversed
        } else if self.refunded() >= self.amount {
            PurchaseStatus::Refunded
        } else if self.refunded() > Decimal::ZERO {
            PurchaseStatus::PartiallyRefunded
        } else {
            self.award_status.into()
        }
    }
}

/// `round(points × part / whole)` with `rounding`, exactly: the quotient's integer part and the
/// remainder are computed in decimals without any rounding, then the remainder decides.
/// Expects `points ≥ 0`, `0 ≤ part ≤ whole`, `whole > 0`.
pub fn proportion(points: i64, part: Decimal, whole: Decimal, rounding: Rounding) -> Option<i64> {
    if whole <= Decimal::ZERO || part < Decimal::ZERO || points < 0 {
        return None;
    }
    if part == whole {
        return Some(points);
    }
    let numerator = Decimal::from(points).checked_mul(part)?;
    let mut quotient = numerator.checked_div(whole)?.trunc();
    let mut remainder = numerator.checked_sub(quotient.checked_mul(whole)?)?;
    // The division may round its last digit; bring the remainder back into [0, whole).
    while remainder < Decimal::ZERO {
        quotient -= Decimal::ONE;
        remainder = remainder.checked_add(whole)?;
    }
    while remainder >= whole {
        quotient += Decimal::ONE;
        remainder = remainder.checked_sub(whole)?;
    }
    let up = match rounding {
        Rounding::Floor => false,
        Rounding::Ceil => remainder > Decimal::ZERO,
        // Half away from zero; everything here is non-negative.
        Rounding::Nearest => remainder.checked_mul(Decimal::TWO)? >= whole,
    };
    if up {
        quotient += Decimal::ONE;
    }
    i64::try_from(quotient).ok()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use shared::money::Currency;

    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn state(amount: &str) -> ReversalState {
        ReversalState {
            amount: dec(amount),
            currency: "USD".into(),
            award_status: AwardStatus::Awarded,
            partial_sum: Decimal::ZERO,
            cumulative_max: Decimal::ZERO,
            fully_refunded: false,
            chargebacks: BTreeSet::new(),
            won: BTreeSet::new(),
        }
    }

    fn partial(amount: &str) -> RefundAmount {
        RefundAmount::Partial {
            amount: dec(amount),
            currency: None,
        }
    }

    #[test]
    fn partial_refunds_land_on_the_points_of_one_refund_of_their_sum() {
        let mut s = state("79.99");
        s.absorb(ReversalKind::Refund, "r1", &partial("40.00"))
            .unwrap();
        assert_eq!(s.reversed(80, Rounding::Nearest), Some(40));
        assert_eq!(s.status(), PurchaseStatus::PartiallyRefunded);
        s.absorb(ReversalKind::Refund, "r2", &partial("39.99"))
            .unwrap();
        assert_eq!(s.reversed(80, Rounding::Nearest), Some(80));
        assert_eq!(s.status(), PurchaseStatus::Refunded);

        let mut once = state("79.99");
        once.absorb(ReversalKind::Refund, "r", &partial("79.99"))
            .unwrap();
        assert_eq!(once.reversed(80, Rounding::Nearest), Some(80));
    }

    #[test]
    fn refunds_beyond_the_amount_cap_and_full_refunds_take_everything() {
        let mut s = state("10");
        s.absorb(ReversalKind::Refund, "r1", &partial("25"))
            .unwrap();
        assert_eq!(s.refunded(), dec("25"));
        assert_eq!(s.reversed(10, Rounding::Nearest), Some(10));
        let mut full = state("10");
        full.absorb(ReversalKind::Refund, "full", &RefundAmount::Full)
            .unwrap();
        assert_eq!(full.refunded(), dec("10"));
        assert_eq!(full.reversed(10, Rounding::Ceil), Some(10));
    }

    #[test]
    fn a_partial_and_a_full_refund_show_the_same_total_in_either_order() {
        let mut partial_first = state("100");
        partial_first
            .absorb(ReversalKind::Refund, "r1", &partial("25"))
            .unwrap();
        partial_first
            .absorb(ReversalKind::Refund, "full", &RefundAmount::Full)
            .unwrap();
        let mut full_first = state("100");
        full_first
            .absorb(ReversalKind::Refund, "full", &RefundAmount::Full)
            .unwrap();
        full_first
            .absorb(ReversalKind::Refund, "r1", &partial("25"))
            .unwrap();
        assert_eq!(partial_first.refunded(), dec("100"));
        assert_eq!(full_first.refunded(), dec("100"));
        assert_eq!(full_first.status(), PurchaseStatus::Refunded);
        // Partial refunds beyond the amount still add up (shown as received, points capped).
        let mut over = state("100");
        for (id, amount) in [("a", "60"), ("b", "60")] {
            over.absorb(ReversalKind::Refund, id, &partial(amount))
                .unwrap();
        }
        over.absorb(ReversalKind::Refund, "full", &RefundAmount::Full)
            .unwrap();
        assert_eq!(over.refunded(), dec("120"));
        assert_eq!(over.reversed(100, Rounding::Nearest), Some(100));
    }

    #[test]
    fn cumulative_totals_never_double_count() {
        let mut s = state("100");
        let cumulative = |amount: &str| RefundAmount::Cumulative {
            amount: dec(amount),
            currency: Currency::USD,
        };
        s.absorb(ReversalKind::Refund, "a", &cumulative("30"))
            .unwrap();
        s.absorb(ReversalKind::Refund, "b", &cumulative("20"))
            .unwrap();
        assert_eq!(s.refunded(), dec("30"), "an older total arriving late");
        s.absorb(ReversalKind::Refund, "c", &cumulative("30"))
            .unwrap();
        assert_eq!(s.reversed(100, Rounding::Nearest), Some(30));
    }

    #[test]
    fn a_chargeback_takes_all_and_its_win_returns_to_the_refund_share() {
        let mut s = state("79.99");
        s.absorb(ReversalKind::Refund, "r1", &partial("40.00"))
            .unwrap();
        s.absorb(ReversalKind::Chargeback, "dp_1", &RefundAmount::Full)
            .unwrap();
        assert_eq!(s.reversed(80, Rounding::Nearest), Some(80));
        assert_eq!(s.status(), PurchaseStatus::Reversed);
        s.absorb(ReversalKind::ChargebackWon, "dp_1", &RefundAmount::Full)
            .unwrap();
        assert_eq!(s.reversed(80, Rounding::Nearest), Some(40));
        assert_eq!(s.status(), PurchaseStatus::PartiallyRefunded);

        // A win that arrives before its chargeback: the chargeback never becomes active.
        let mut early = state("10");
        early
            .absorb(ReversalKind::ChargebackWon, "dp_2", &RefundAmount::Full)
            .unwrap();
        early
            .absorb(ReversalKind::Chargeback, "dp_2", &RefundAmount::Full)
            .unwrap();
        assert_eq!(early.reversed(10, Rounding::Nearest), Some(0));
        assert_eq!(early.status(), PurchaseStatus::Awarded);
    }

    #[test]
    fn another_currency_changes_nothing() {
        let mut s = state("10");
        let eur = Currency::parse("EUR").unwrap();
        let before = s.clone();
        assert_eq!(
            s.absorb(
                ReversalKind::Refund,
                "r",
                &RefundAmount::Partial {
                    amount: dec("5"),
                    currency: Some(eur)
                }
            ),
            Err(Refused::CurrencyMismatch)
        );
        assert_eq!(
            s.absorb(
                ReversalKind::Refund,
                "r",
                &RefundAmount::Cumulative {
                    amount: dec("5"),
                    currency: eur
                }
            ),
            Err(Refused::CurrencyMismatch)
        );
        assert_eq!(s, before);
    }

    #[test]
    fn proportions_are_exact_in_every_rounding_mode() {
        // 80 × 40 / 79.99 = 40.005…
        assert_eq!(
            proportion(80, dec("40"), dec("79.99"), Rounding::Nearest),
            Some(40)
        );
        assert_eq!(
            proportion(80, dec("40"), dec("79.99"), Rounding::Ceil),
            Some(41)
        );
        assert_eq!(
            proportion(80, dec("40"), dec("79.99"), Rounding::Floor),
            Some(40)
        );
        // Exactly half.
        assert_eq!(
            proportion(1, dec("1"), dec("2"), Rounding::Nearest),
            Some(1)
        );
        assert_eq!(proportion(1, dec("1"), dec("2"), Rounding::Floor), Some(0));
        // 1/3 of 9·10^15: a quotient whose decimal expansion never ends.
        assert_eq!(
            proportion(9_000_000_000_000_000, dec("1"), dec("3"), Rounding::Ceil),
            Some(3_000_000_000_000_000)
        );
        assert_eq!(
            proportion(8_999_999_999_999_999, dec("1"), dec("3"), Rounding::Nearest),
            Some(3_000_000_000_000_000)
        );
        assert_eq!(
            proportion(8_999_999_999_999_999, dec("1"), dec("3"), Rounding::Floor),
            Some(2_999_999_999_999_999)
        );
        assert_eq!(proportion(7, dec("0"), dec("3"), Rounding::Ceil), Some(0));
        assert_eq!(proportion(7, dec("1"), dec("0"), Rounding::Ceil), None);
    }
}
