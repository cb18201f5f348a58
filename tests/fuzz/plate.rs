//! Plates: `Plate::parse`, `Plate::key`/`from_key` and `Confusables`.

use leadrelay::contract::plate::{Confusables, PROVINCES, Plate, SUFFIXES, differing_positions};
use proptest::prelude::*;

use crate::config;

/// The default confusable classes, as `Confusables::default` documents them.
const CLASSES: [&str; 6] = ["0ODQ", "1I", "2Z", "5S", "8B", "6G"];

/// A valid plate in its normalised spelling: province, authority letter, and an ordinary,
/// new-energy or special tail.
pub fn valid_plate() -> impl Strategy<Value = String> {
    (
        prop::sample::select(PROVINCES.to_vec()),
        "[A-Z]",
        prop_oneof![
            "[0-9A-Z]{5}",
            "[0-9A-Z]{6}",
            ("[0-9A-Z]{4}", prop::sample::select(SUFFIXES.to_vec()))
                .prop_map(|(t, s)| format!("{t}{s}")),
        ],
    )
        .prop_map(|(province, letter, tail)| format!("{province}{letter}{tail}"))
}

/// A plate as a camera might spell it: separators between characters, lower case,
/// full-width ASCII, surrounding whitespace.
fn spelt_plate() -> impl Strategy<Value = (String, String)> {
    let seps = prop::collection::vec(
        prop::sample::select(vec![
            "", "", "·", " ", "-", "　", "•", "_", "．", "・", "\t",
        ]),
        9,
    );
    (valid_plate(), seps, prop::collection::vec(0u8..3, 9)).prop_map(|(plate, seps, styles)| {
        let mut spelt = String::new();
        for (i, c) in plate.chars().enumerate() {
            spelt.push_str(seps[i]);
            match styles[i] {
                1 => spelt.push(c.to_ascii_lowercase()),
                2 if c.is_ascii() => spelt.extend(char::from_u32(c as u32 + 0xFEE0)),
                _ => spelt.push(c),
            }
        }
        spelt.push_str(seps[8]);
        (plate, spelt)
    })
}

/// Near-valid reads: a valid plate with a character inserted, deleted or replaced by an
/// arbitrary one (odd Unicode included), or strings of plate-ish characters.
fn near_plate() -> impl Strategy<Value = String> {
    let odd_char = prop_oneof![
        any::<char>(),
        prop::sample::select(vec![
            '\u{200B}', '\u{FEFF}', '\u{202E}', '\u{0301}', '\u{3000}', 'İ', 'ı', 'ß', 'Ａ', 'ｚ',
            '０', '\u{0}', '\u{85}', '浙', '警', 'O', 'I',
        ]),
    ];
    prop_oneof![
        (valid_plate(), 0..9usize, odd_char.clone()).prop_map(|(p, at, c)| {
            let mut chars: Vec<char> = p.chars().collect();
            chars.insert(at.min(chars.len()), c);
            chars.into_iter().collect()
        }),
        (valid_plate(), 0..8usize, odd_char).prop_map(|(p, at, c)| {
            let mut chars: Vec<char> = p.chars().collect();
            let at = at % chars.len();
            chars[at] = c;
            chars.into_iter().collect()
        }),
        (valid_plate(), 0..8usize).prop_map(|(p, at)| {
            let mut chars: Vec<char> = p.chars().collect();
            chars.remove(at % chars.len());
            chars.into_iter().collect()
        }),
        "[浙京粤沪警港A-Za-z0-9·\\- ]{0,14}",
        "\\PC{0,16}",
        ".{0,16}",
    ]
}

/// A valid plate and a position in its body with a confusable substitute for that position.
fn plate_with_confusion() -> impl Strategy<Value = (String, String)> {
    (valid_plate(), 1..8usize, any::<prop::sample::Index>()).prop_filter_map(
        "no confusable character in the body",
        |(plate, at, pick)| {
            let mut chars: Vec<char> = plate.chars().collect();
            let at = at % chars.len();
            let class = CLASSES.iter().find(|c| c.contains(chars[at]))?;
            let others: Vec<char> = class.chars().filter(|&c| c != chars[at]).collect();
            // The authority letter must stay a letter for the variant to be a plate.
            let others: Vec<char> = others
                .into_iter()
                .filter(|c| at != 1 || c.is_ascii_uppercase())
                .collect();
            if others.is_empty() {
                return None;
            }
            chars[at] = others[pick.index(others.len())];
            Some((plate, chars.into_iter().collect()))
        },
    )
}

proptest! {
    #![proptest_config(config(300))]

    /// Normalised plates parse to themselves; display → parse and key → from_key invert.
    #[test]
    fn valid_plates_round_trip(s in valid_plate()) {
        let plate = Plate::parse(&s);
        prop_assert!(plate.is_ok(), "{s}: {plate:?}");
        let plate = plate.unwrap();
        prop_assert_eq!(plate.as_str(), s.as_str());
        prop_assert_eq!(Plate::parse(&plate.to_string()), Ok(plate));
        prop_assert_eq!(Plate::from_key(plate.key()), Some(plate));
        let json = serde_json::to_string(&plate).unwrap();
        prop_assert_eq!(serde_json::from_str::<Plate>(&json).unwrap(), plate);
    }

    /// Every accepted spelling normalises to the plain plate, and normalising is idempotent.
    #[test]
    fn spellings_normalise_to_the_plate((plate, spelt) in spelt_plate()) {
        let parsed = Plate::parse(&spelt);
        prop_assert_eq!(parsed.map(|p| p.to_string()), Ok(plate.clone()), "{:?}", spelt);
        let once = Plate::parse(&spelt).unwrap();
        prop_assert_eq!(Plate::parse(once.as_str()), Ok(once));
    }

    /// No panic; whatever is accepted is plate-shaped, is a fixed point of parsing, and its
    /// key inverts.
    #[test]
    fn near_plates_never_panic_and_accepted_ones_are_plates(s in near_plate()) {
        if let Ok(plate) = Plate::parse(&s) {
            let text = plate.as_str();
            let chars: Vec<char> = text.chars().collect();
            prop_assert!((7..=8).contains(&chars.len()), "{:?} → {}", s, text);
            prop_assert!(PROVINCES.contains(&chars[0]), "{:?} → {}", s, text);
            prop_assert!(chars[1].is_ascii_uppercase(), "{:?} → {}", s, text);
            let last = chars[chars.len() - 1];
            let body = if SUFFIXES.contains(&last) {
                prop_assert_eq!(chars.len(), 7);
                &chars[2..6]
            } else {
                &chars[2..]
            };
            prop_assert!(body.iter().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
                "{:?} → {}", s, text);
            prop_assert_eq!(Plate::parse(text), Ok(plate));
            prop_assert_eq!(Plate::from_key(plate.key()), Some(plate));
        }
    }

    /// One OCR confusion keeps the canonical key and the canonical string, and counts as one
    /// differing position.
    #[test]
    fn a_confusable_substitution_keeps_the_canonical_key((plate, variant) in plate_with_confusion()) {
        let c = Confusables::default();
        let a = Plate::parse(&plate).unwrap();
        let b = Plate::parse(&variant);
        prop_assert!(b.is_ok(), "{variant}: {b:?}");
        let b = b.unwrap();
        prop_assert_eq!(c.canonical_key(a.key()), c.canonical_key(b.key()), "{} vs {}", a, b);
        prop_assert_eq!(c.canonical(&a), c.canonical(&b));
        prop_assert_eq!(differing_positions(a.key(), b.key()), 1);
        // Canonicalising twice changes nothing.
        let k = c.canonical_key(a.key());
        prop_assert_eq!(c.canonical_key(k), k);
    }

    /// Keys of random 64-bit numbers: `from_key` never panics and what it returns re-keys to
    /// the same number.
    #[test]
    fn from_key_inverts_where_defined(key in any::<u64>()) {
        if let Some(plate) = Plate::from_key(key) {
            prop_assert_eq!(plate.key(), key);
            prop_assert_eq!(Plate::parse(plate.as_str()), Ok(plate));
        }
    }

    /// Arbitrary class lists: refused or usable, never a panic; `classes` round-trips.
    #[test]
    fn confusable_classes_never_panic(classes in prop::collection::vec("[0-9A-Za-z#]{0,5}", 0..6)) {
        if let Ok(c) = Confusables::from_classes(&classes) {
            prop_assert_eq!(Confusables::from_classes(&c.classes()), Ok(c));
        }
    }
}
