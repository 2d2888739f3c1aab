//! Exact `multipleOf`: decided on decimal values, not on binary floats with an epsilon.
//!
//! Owns: the decimal value of a JSON number and the divisibility test between two of them.
//!
//! serde_json parses a fractional number to the nearest f64 (the engine's `float_roundtrip`
//! feature makes that nearest one exactly). The decimal taken here is the shortest one that
//! reads back as the same f64, which is the number as written whenever it was written with at
//! most 15 significant digits (every such decimal survives the round trip). Longer numbers are
//! judged by their nearest f64: `0.30000000000000001` is the f64 of `0.3` and counts as `0.3`.
//! Integers are taken exactly (i64/u64, as serde_json keeps them).
//!
//! Must not import anything beyond std: no I/O, no clock, no randomness.

/// `digits × 10^exponent`, the sign dropped (it does not change divisibility), with the
/// trailing zeros moved into the exponent so each value has one form. Zero is `0 × 10^0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Decimal {
    digits: u128,
    exponent: i32,
}

impl Decimal {
    pub(super) fn of_int(i: i128) -> Decimal {
        Decimal::normal(i.unsigned_abs(), 0)
    }

    /// The shortest decimal that reads back as `f`; None for NaN and the infinities.
    pub(super) fn of_f64(f: f64) -> Option<Decimal> {
        if !f.is_finite() {
            return None;
        }
        // `{:e}` is Rust's shortest round-trip form: "3.0000000001e-1", "1e300", "5e-324".
        let text = format!("{:e}", f.abs());
        let (mantissa, exponent) = text.split_once('e')?;
        let exponent: i32 = exponent.parse().ok()?;
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let mut digits: u128 = 0;
        for c in whole.chars().chain(fraction.chars()) {
            digits = digits * 10 + u128::from(c.to_digit(10)?);
        }
        let scale = i32::try_from(fraction.len()).ok()?;
        Some(Decimal::normal(digits, exponent - scale))
    }

    fn normal(mut digits: u128, mut exponent: i32) -> Decimal {
        if digits == 0 {
            return Decimal {
                digits: 0,
                exponent: 0,
            };
        }
        while digits.is_multiple_of(10) {
            digits /= 10;
            exponent += 1;
        }
        Decimal { digits, exponent }
    }

    /// Whether `self / step` is an integer. `step` is not zero (the schema refuses that).
    pub(super) fn is_multiple_of(self, step: Decimal) -> bool {
        if self.digits == 0 {
            return true;
        }
        if step.digits == 0 {
            return false;
        }
        // self / step = (d / s) × 10^k with k = self.exponent − step.exponent.
        let k = self.exponent - step.exponent;
        if k < 0 {
            // d has no factor 10 while s × 10^−k has one, so s × 10^−k cannot divide d.
            return false;
        }
        // Is d × 10^k ≡ 0 (mod s)? Reduce step by step so nothing overflows: k is at most the
        // spread of f64 exponents (about 650), so this is a few thousand additions at worst.
        let m = step.digits;
        let mut r = self.digits % m;
        for _ in 0..k {
            if r == 0 {
                return true;
            }
            r = times_ten_mod(r, m);
        }
        r == 0
    }
}

/// A `multipleOf` step, with what the fast path for float values needs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Divisor {
    exact: Decimal,
    /// For a step `d / 10^k` with `d < 2^53` and `k <= 22`: (the step as f64, d, 10^k), all
    /// exact in f64. Steps such as 0.01 or 0.5 have one; 1e-30 or 7 do not.
    fast: Option<(f64, f64, f64)>,
}

impl Divisor {
    pub(super) fn new(exact: Decimal) -> Divisor {
        let k = -exact.exponent;
        let fast = (exact.digits < 1 << 53 && (0..=22).contains(&k)).then(|| {
            let digits = exact.digits as f64;
            let scale = 10f64.powi(k);
            (digits / scale, digits, scale)
        });
        Divisor { exact, fast }
    }

    pub(super) fn divides_int(&self, i: i128) -> bool {
        Decimal::of_int(i).is_multiple_of(self.exact)
    }

    /// Whether the shortest decimal reading back as `x` is a multiple of the step.
    ///
    /// Fast path, without formatting `x`: let q be the nearest integer to x / step. If
    /// `q × d < 10^15` and `q × d / 10^k` (one correctly rounded division of exact operands)
    /// is `x`, then the decimal D = q × d × 10^−k reads back as `x` and has at most 15
    /// significant digits. Two different decimals of at most 15 significant digits never read
    /// back as the same f64, so D is the shortest decimal of `x`, and it is a multiple of the
    /// step. Anything else takes the exact path.
    pub(super) fn divides_f64(&self, x: f64) -> bool {
        if let Some((step, digits, scale)) = self.fast {
            let q = (x / step).round();
            let n = q.abs() * digits;
            if n < 1e15 && (q * digits) / scale == x {
                return true;
            }
        }
        Decimal::of_f64(x).is_some_and(|d| d.is_multiple_of(self.exact))
    }
}

/// `(r × 10) mod m` for `r < m`, without overflowing u128.
fn times_ten_mod(r: u128, m: u128) -> u128 {
    let add = |a: u128, b: u128| if a >= m - b { a - (m - b) } else { a + b };
    let twice = add(r, r);
    let four = add(twice, twice);
    let eight = add(four, four);
    add(eight, twice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(f: f64) -> Decimal {
        Decimal::of_f64(f).expect("finite")
    }

    #[test]
    fn decimal_takes_the_shortest_round_trip_form() {
        assert_eq!(
            dec(0.1),
            Decimal {
                digits: 1,
                exponent: -1
            }
        );
        assert_eq!(
            dec(-0.30000000001),
            Decimal {
                digits: 30000000001,
                exponent: -11
            }
        );
        assert_eq!(
            dec(1e300),
            Decimal {
                digits: 1,
                exponent: 300
            }
        );
        assert_eq!(
            dec(5e-324),
            Decimal {
                digits: 5,
                exponent: -324
            }
        );
        assert_eq!(dec(0.0), Decimal::of_int(0));
        assert_eq!(dec(-0.0), Decimal::of_int(0));
        assert_eq!(dec(1200.0), Decimal::of_int(1200));
        assert_eq!(Decimal::of_f64(f64::NAN), None);
        assert_eq!(Decimal::of_f64(f64::INFINITY), None);
    }

    #[test]
    fn decimal_fast_path_agrees_with_the_exact_one() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in [
            0.1, 0.01, 0.5, 0.25, 0.05, 1e-22, 0.3, 2.5, 1.0, 7.0, 0.001, 1e-5,
        ] {
            let divisor = Divisor::new(dec(step));
            for _ in 0..5_000 {
                let r = next();
                // Decimals of 1 to 17 digits around the step's scale, multiples or not.
                let digits = 1 + (r % 17) as i32;
                let mantissa = (r >> 8) % 10u64.pow(digits as u32);
                let exponent = ((r >> 40) % 12) as i32 - 8 + dec(step).exponent;
                let text = format!("{mantissa}e{exponent}");
                let value: f64 = text.parse().expect("a float");
                let exact = dec(value).is_multiple_of(dec(step));
                assert_eq!(
                    divisor.divides_f64(value),
                    exact,
                    "{text} multipleOf {step}"
                );
                assert_eq!(
                    divisor.divides_f64(-value),
                    exact,
                    "-{text} multipleOf {step}"
                );
            }
        }
    }

    #[test]
    fn decimal_multiples_are_exact() {
        let tenth = dec(0.1);
        for yes in [0.3, 1.7, 5.0, -0.2, 0.0, 123456789.1, 1e300] {
            assert!(dec(yes).is_multiple_of(tenth), "{yes} is a multiple of 0.1");
        }
        for no in [0.30000000001, 0.35, 1e-300, 0.05] {
            assert!(
                !dec(no).is_multiple_of(tenth),
                "{no} is not a multiple of 0.1"
            );
        }
        assert!(dec(0.75).is_multiple_of(dec(0.25)));
        assert!(!dec(0.8).is_multiple_of(dec(0.25)));
        assert!(dec(0.0003).is_multiple_of(dec(0.0001)));
        assert!(dec(19.99).is_multiple_of(dec(0.01)));
        assert!(!dec(19.999).is_multiple_of(dec(0.01)));
        assert!(dec(1e-320).is_multiple_of(dec(5e-324)));
        assert!(Decimal::of_int(i128::from(u64::MAX)).is_multiple_of(Decimal::of_int(5)));
        assert!(!Decimal::of_int(i128::from(u64::MAX)).is_multiple_of(Decimal::of_int(2)));
        assert!(Decimal::of_int(i128::MIN).is_multiple_of(Decimal::of_int(1 << 100)));
        assert!(Decimal::of_int(3).is_multiple_of(dec(1.5)));
        assert!(!Decimal::of_int(3).is_multiple_of(dec(0.7)));
        // A step near u128::MAX must not overflow the reduction.
        let huge = Decimal::normal(u128::MAX - 1, 0);
        assert!(!Decimal::normal(7, 40).is_multiple_of(huge));
        assert!(times_ten_mod(u128::MAX - 2, u128::MAX - 1) < u128::MAX - 1);
    }
}
