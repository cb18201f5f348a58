//! PRC resident identity numbers (GB 11643): 6-digit region, 8-digit birth date
//! (YYYYMMDD), 3-digit sequence, and an ISO 7064 MOD 11-2 check character (`0`-`9` or `X`).
//!
//! Error messages never repeat the number: identity numbers are personal data and parse
//! errors end up in logs and dead letters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const LEN: usize = 18;
/// ISO 7064 MOD 11-2 weights of the first 17 digits (2^(17-i) mod 11).
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character by weighted sum mod 11.
const CHECK_CHARS: &[u8; 11] = b"10X98765432";
/// Birth years accepted: the oldest living residents to the end of the century.
const YEARS: std::ops::RangeInclusive<u32> = 1850..=2099;

/// Why a string is not an identity number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonIdError {
    #[error("identity number: expected 18 characters, found {found}")]
    Length { found: usize },
    #[error("identity number: character {position} is {found:?}, expected a digit")]
    NonDigit { position: usize, found: char },
    #[error("identity number: check character should be {expected:?}, found {found:?}")]
    CheckCharacter { expected: char, found: char },
    #[error("identity number: characters 7-14 are not a real birth date (YYYYMMDD): {reason}")]
    BirthDate { reason: &'static str },
}

/// A validated 18-character identity number, check character upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonId {
    /// ASCII: 17 digits and a correct check character (`0`-`9` or `X`).
    bytes: [u8; LEN],
}

impl PersonId {
    /// Validates an identity number; surrounding whitespace and a lower-case `x` are accepted.
    pub fn parse(input: &str) -> Result<PersonId, PersonIdError> {
        let s = input.trim();
        let found = s.chars().count();
        if found != LEN {
            return Err(PersonIdError::Length { found });
        }
        let mut bytes = [0u8; LEN];
        let mut sum = 0u32;
        for (i, c) in s.chars().take(LEN - 1).enumerate() {
            let digit =
                c.to_digit(10)
                    .filter(|_| c.is_ascii_digit())
                    .ok_or(PersonIdError::NonDigit {
                        position: i + 1,
                        found: c,
                    })?;
            bytes[i] = c as u8;
            sum += WEIGHTS[i] * digit;
        }
        let expected = char::from(CHECK_CHARS[(sum % 11) as usize]);
        let found = s.chars().last().unwrap_or_default().to_ascii_uppercase();
        if found != expected {
            return Err(PersonIdError::CheckCharacter { expected, found });
        }
        bytes[LEN - 1] = expected as u8;
        check_birth_date(&bytes[6..14])?;
        Ok(PersonId { bytes })
    }

    /// The number, e.g. `11010519491231002X`.
    pub fn as_str(&self) -> &str {
        // All bytes are ASCII by construction, so this never falls back.
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }

    /// A unique integer for hashing: the 17 digits as a number × 11 + the check value
    /// (`X` = 10). Below 1.1 × 10^18, so it fits in 63 bits.
    pub fn key(&self) -> u64 {
        let digits = self.bytes[..LEN - 1]
            .iter()
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        let check = match self.bytes[LEN - 1] {
            b'X' => 10,
            b => u64::from(b - b'0'),
        };
        digits * 11 + check
    }
}

/// `date` is 8 ASCII digits.
fn check_birth_date(date: &[u8]) -> Result<(), PersonIdError> {
    let num = |r: std::ops::Range<usize>| {
        date[r]
            .iter()
            .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'))
    };
    let (year, month, day) = (num(0..4), num(4..6), num(6..8));
    if !YEARS.contains(&year) {
        return Err(PersonIdError::BirthDate {
            reason: "year outside 1850-2099",
        });
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => {
            return Err(PersonIdError::BirthDate {
                reason: "month is not 01-12",
            });
        }
    };
    if !(1..=days).contains(&day) {
        return Err(PersonIdError::BirthDate {
            reason: "no such day in that month",
        });
    }
    Ok(())
}

impl fmt::Display for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PersonId {
    type Err = PersonIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PersonId::parse(s)
    }
}

impl Serialize for PersonId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PersonId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        PersonId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Appends the check character to 17 digits, by the algorithm under test's definition.
    fn with_check(digits: &str) -> String {
        let sum: u32 = digits
            .bytes()
            .zip(WEIGHTS)
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        format!("{digits}{}", char::from(CHECK_CHARS[(sum % 11) as usize]))
    }

    #[test]
    fn standard_example_and_spellings() {
        let id = PersonId::parse("11010519491231002X").unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
        assert_eq!(PersonId::parse(" 11010519491231002x\n"), Ok(id));
        assert_eq!("11010519491231002X".parse::<PersonId>(), Ok(id));
        assert_eq!(id.to_string(), "11010519491231002X");
        assert_eq!(id.key(), 11010519491231002 * 11 + 10);
        // Other real-format numbers, check characters computed independently.
        for ok in [
            "440524188001010014",
            "330281199202290015",
            "110101200001010010",
        ] {
            assert!(PersonId::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(with_check("33028119920229001"), "330281199202290015");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = |s: &str| PersonId::parse(s).unwrap_err();
        assert_eq!(err("1101051949"), PersonIdError::Length { found: 10 });
        assert_eq!(err(""), PersonIdError::Length { found: 0 });
        assert_eq!(
            err("1101051949123100AX"),
            PersonIdError::NonDigit {
                position: 17,
                found: 'A'
            }
        );
        assert_eq!(
            err("110105194912310021").to_string(),
            "identity number: check character should be 'X', found '1'"
        );
        assert!(matches!(
            err("11010519491231002Y"),
            PersonIdError::CheckCharacter { .. }
        ));
        assert!(matches!(
            err("１１０１０５１９４９１２３１００２Ｘ"),
            PersonIdError::NonDigit { .. }
        ));
        for bad_date in [
            "33028119890229001",
            "33028119901301001",
            "33028117001201001",
        ] {
            assert!(
                matches!(err(&with_check(bad_date)), PersonIdError::BirthDate { .. }),
                "{bad_date}"
            );
        }
        assert!(!err("110105194912310021").to_string().contains("110105"));
    }

    #[test]
    fn serde_validates() {
        let id: PersonId = serde_json::from_str("\"11010519491231002x\"").unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"11010519491231002X\""
        );
        assert!(serde_json::from_str::<PersonId>("\"110105194912310021\"").is_err());
    }

    /// 17 digits with a real birth date in characters 7-14.
    fn digits17() -> impl Strategy<Value = String> {
        (
            "[1-9][0-9]{5}",
            1850u32..2100,
            1u32..13,
            1u32..29,
            "[0-9]{3}",
        )
            .prop_map(|(region, y, m, d, seq)| format!("{region}{y:04}{m:02}{d:02}{seq}"))
    }

    proptest! {
        #[test]
        fn computed_check_parses(digits in digits17()) {
            let s = with_check(&digits);
            let id = PersonId::parse(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
        }

        #[test]
        fn one_changed_digit_fails_the_check(digits in digits17(), pos in 0usize..17, delta in 1u8..10) {
            let mut bytes = with_check(&digits).into_bytes();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(
                matches!(PersonId::parse(&changed), Err(PersonIdError::CheckCharacter { .. })),
                "{}", changed
            );
        }

        #[test]
        fn distinct_ids_have_distinct_keys(a in digits17(), b in digits17()) {
            let (ia, ib) = (PersonId::parse(&with_check(&a)).unwrap(), PersonId::parse(&with_check(&b)).unwrap());
            prop_assert_eq!(ia == ib, ia.key() == ib.key());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,20}") {
            let _ = PersonId::parse(&s);
        }
    }
}
