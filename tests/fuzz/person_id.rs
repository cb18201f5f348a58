//! Identity numbers: `PersonId::parse`.

use leadrelay::contract::person_id::PersonId;
use proptest::prelude::*;

use crate::config;

/// ISO 7064 MOD 11-2 check character of 17 digits, from the standard's definition: weight of
/// position i (1-based from the left) is 2^(18-i) mod 11, and the check value c satisfies
/// (sum + c) ≡ 1 (mod 11), with 10 written `X`.
pub fn check_char(digits17: &str) -> char {
    let sum: u32 = digits17
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let weight = (1u32 << (17 - i)) % 11;
            weight * u32::from(b - b'0')
        })
        .sum();
    let c = (12 - sum % 11) % 11;
    if c == 10 {
        'X'
    } else {
        char::from_digit(c, 10).unwrap_or('?')
    }
}

fn days_in(year: u32, month: u32) -> u32 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A valid identity number: any region, a real birth date in 1850-2099, any sequence, and
/// its check character.
pub fn valid_person_id() -> impl Strategy<Value = String> {
    (
        0..1_000_000u32,
        1850..=2099u32,
        1..=12u32,
        0..1000u32,
        0..31u32,
    )
        .prop_map(|(region, year, month, seq, day)| {
            let day = day % days_in(year, month) + 1;
            let digits = format!("{region:06}{year:04}{month:02}{day:02}{seq:03}");
            format!("{digits}{}", check_char(&digits))
        })
}

/// Strings near an identity number: right length with odd characters, wrong lengths,
/// full-width digits, embedded whitespace.
fn near_person_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{17}[0-9Xx]",
        "[0-9]{15,19}",
        "[0-9Xx ]{16,20}",
        "[０-９]{17}[０-９Ｘ]",
        (valid_person_id(), 0..18usize, any::<char>()).prop_map(|(s, at, c)| {
            let mut chars: Vec<char> = s.chars().collect();
            chars.insert(at, c);
            chars.into_iter().collect()
        }),
        "\\PC{0,24}",
        ".{0,24}",
    ]
}

proptest! {
    #![proptest_config(config(500))]

    /// Valid numbers parse, keep their text, and survive display → parse, with lower-case
    /// `x` and surrounding whitespace.
    #[test]
    fn valid_ids_parse_and_round_trip(id in valid_person_id(), pad in "[ \t\n]{0,2}") {
        let parsed = PersonId::parse(&id);
        prop_assert!(parsed.is_ok(), "{id}: {parsed:?}");
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.as_str(), id.as_str());
        prop_assert_eq!(PersonId::parse(&parsed.to_string()), Ok(parsed));
        let spelt = format!("{pad}{}{pad}", id.to_lowercase());
        prop_assert_eq!(PersonId::parse(&spelt), Ok(parsed));
        let json = serde_json::to_string(&parsed).unwrap();
        prop_assert_eq!(serde_json::from_str::<PersonId>(&json).unwrap(), parsed);
    }

    /// MOD 11-2 catches every single-character error: every weight is non-zero mod 11 and a
    /// digit changes by less than 11.
    #[test]
    fn any_single_character_change_is_rejected(
        id in valid_person_id(),
        at in 0..18usize,
        to in prop::sample::select("0123456789X".chars().collect::<Vec<_>>()),
    ) {
        let mut chars: Vec<char> = id.chars().collect();
        prop_assume!(chars[at] != to && (at == 17 || to != 'X'));
        chars[at] = to;
        let changed: String = chars.into_iter().collect();
        prop_assert!(PersonId::parse(&changed).is_err(), "{changed} accepted, from {id}");
    }

    /// Whatever is accepted is 17 ASCII digits and the right check character.
    #[test]
    fn near_ids_never_panic_and_accepted_ones_are_valid(s in near_person_id()) {
        if let Ok(id) = PersonId::parse(&s) {
            let text = id.as_str();
            prop_assert_eq!(text.len(), 18);
            prop_assert!(text[..17].bytes().all(|b| b.is_ascii_digit()), "{text}");
            prop_assert_eq!(text.chars().last(), Some(check_char(&text[..17])));
            prop_assert_eq!(text, s.trim().to_uppercase());
        }
    }
}
