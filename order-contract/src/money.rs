//! Money as a whole number of cents: never a float in arithmetic or storage.
//! Events carry cents (`priceCents`, `totalCents`); the public API carries
//! decimal amounts (`67.48`), parsed and printed here without floating point.

use std::fmt;

/// An amount in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cents(pub i64);

impl Cents {
    /// Parses a JSON number with at most two decimals, exactly.
    pub fn parse(number: &serde_json::Number) -> Result<Self, String> {
        let text = number.to_string();
        if text.starts_with('-') {
            return Err("must not be negative".into());
        }
        if text.contains(['e', 'E']) {
            return Err("must be a plain decimal number".into());
        }
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        if fraction.len() > 2 {
            return Err("must have at most 2 decimals".into());
        }
        let whole: i64 = whole.parse().map_err(|_| "is too large".to_owned())?;
        let fraction: i64 = format!("{fraction:0<2}")
            .parse()
            .map_err(|_| "is not a number".to_owned())?;
        whole
            .checked_mul(100)
            .and_then(|c| c.checked_add(fraction))
            .map(Cents)
            .ok_or_else(|| "is too large".into())
    }

    /// The amount as an exact JSON number (`67.48`), for the public API.
    pub fn amount(self) -> serde_json::Number {
        serde_json::from_str(&self.to_string()).unwrap_or_else(|_| serde_json::Number::from(0))
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_parsed_exactly_without_floats() {
        let n = |s: &str| serde_json::from_str::<serde_json::Number>(s).unwrap();
        assert_eq!(Cents::parse(&n("0.1")).unwrap(), Cents(10));
        assert_eq!(Cents::parse(&n("19.99")).unwrap(), Cents(1999));
        assert_eq!(Cents::parse(&n("7")).unwrap(), Cents(700));
        assert!(Cents::parse(&n("1.999")).is_err());
        assert!(Cents::parse(&n("-1")).is_err());
        // JSON exponent notation denotes an exact decimal too.
        assert_eq!(Cents::parse(&n("1e3")).unwrap(), Cents(100_000));
        assert!(Cents::parse(&n("99999999999999999999")).is_err());
    }

    #[test]
    fn amounts_print_as_exact_decimals() {
        assert_eq!(
            serde_json::to_string(&Cents(6748).amount()).unwrap(),
            "67.48"
        );
        assert_eq!(
            serde_json::to_string(&Cents(1550).amount()).unwrap(),
            "15.5"
        );
        assert_eq!(serde_json::to_string(&Cents(700).amount()).unwrap(), "7.0");
    }
}
