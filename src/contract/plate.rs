//! PRC licence plates: normalisation of camera/OCR reads, validation of the plate shape,
//! OCR-confusable character classes, and a packed `u64` key so the hotlist hashes integers.
//!
//! A plate is a province character, an issuing-authority letter, and then either
//! 5 letters/digits (ordinary, `浙B12345`), 6 (new-energy, `浙BD12345`), or 4 plus a special
//! suffix character (`粤Z1234港`). Reads are normalised before validation: separators are
//! dropped, full-width ASCII becomes ASCII, lower case becomes upper case. `I` and `O` are
//! accepted although issued plates avoid them, because OCR produces them and the fuzzy
//! matcher needs to see them.
//!
//! # Key encoding
//!
//! [`Plate::key`] packs a plate into 51 bits, most significant first:
//!
//! | bits   | field |
//! |--------|-------|
//! | 46..51 | province index into [`PROVINCES`] (0..=30) |
//! | 4..46  | 7 body fields of 6 bits: the authority letter, then the tail; `0` = absent, `1..=10` = `0`..`9`, `11..=36` = `A`..`Z` |
//! | 0..4   | special suffix: `0` = none, `1..=9` = index into [`SUFFIXES`] plus one |
//!
//! The encoding is injective ([`Plate::from_key`] inverts it), and among plates with the same
//! province, length and suffix, key order equals string order. [`Confusables::canonical_key`]
//! maps every body field to its class representative, giving the key of the canonical form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Province characters a plate may start with; a plate key stores the index into this table.
pub const PROVINCES: [char; 31] = [
    '京', '津', '沪', '渝', '冀', '豫', '云', '辽', '黑', '湘', '皖', '鲁', '新', '苏', '浙', '赣',
    '鄂', '桂', '甘', '晋', '蒙', '陕', '吉', '闽', '贵', '粤', '青', '藏', '川', '宁', '琼',
];

/// Suffix characters of special plates (police, learner, trailer, Hong Kong/Macau, consular,
/// embassy, test, oversize); a plate key stores the index plus one.
pub const SUFFIXES: [char; 9] = ['警', '学', '挂', '港', '澳', '领', '使', '试', '超'];

/// Longest normalised plate in UTF-8 bytes: 3 (province) + 1 + 4 + 3 (suffix).
const MAX_BYTES: usize = 11;
/// Longest plate in characters (new-energy).
const MAX_CHARS: usize = 8;
/// Body fields (authority letter plus tail) a key has room for.
const BODY_FIELDS: u32 = 7;
const FIELD_BITS: u32 = 6;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const SUFFIX_BITS: u32 = 4;
const PROVINCE_SHIFT: u32 = SUFFIX_BITS + BODY_FIELDS * FIELD_BITS;
/// Bits of the whole body, before shifting by `SUFFIX_BITS`.
const BODY_MASK: u64 = (1 << (BODY_FIELDS * FIELD_BITS)) - 1;
/// The lowest bit of every body field, before shifting by `SUFFIX_BITS`.
const FIELD_LOW_BITS: u64 = 0b000001_000001_000001_000001_000001_000001_000001;
/// Inputs longer than this are quoted truncated in errors.
const QUOTE_CHARS: usize = 32;

/// Why a read is not plate-shaped. Every message quotes the input (truncated if long).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlateError {
    #[error("plate is empty")]
    Empty,
    #[error(
        "plate {input:?}: must start with a province character such as 浙, 京 or 粤, found {found:?}"
    )]
    NoProvince { input: String, found: char },
    #[error(
        "plate {input:?}: expected an issuing-authority letter A-Z after the province, found {found}"
    )]
    NoAuthorityLetter { input: String, found: String },
    #[error("plate {input:?}: {found:?} is not a letter or digit")]
    InvalidCharacter { input: String, found: char },
    #[error(
        "plate {input:?}: expected 5 or 6 characters after the issuing-authority letter, found {found}"
    )]
    TailLength { input: String, found: usize },
    #[error(
        "plate {input:?}: a special plate has 4 characters between the issuing-authority letter and its suffix {suffix:?}, found {found}"
    )]
    SpecialTailLength {
        input: String,
        suffix: char,
        found: usize,
    },
}

/// What kind of plate a [`Plate`] is, from its length and suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlateKind {
    /// 5 characters after the authority letter.
    Ordinary,
    /// 6 characters after the authority letter.
    NewEnergy,
    /// 4 characters and a suffix from [`SUFFIXES`].
    Special(char),
}

/// A normalised, validated plate such as `浙B12345`. Small and `Copy`; compares as its string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Plate {
    /// UTF-8 of the normalised plate in `text[..len]`; always a valid plate, the rest is zero.
    text: [u8; MAX_BYTES],
    len: u8,
}

impl Plate {
    /// Normalises and validates a read. See the module docs for what is accepted.
    pub fn parse(input: &str) -> Result<Plate, PlateError> {
        let mut chars = ['\0'; MAX_CHARS];
        let mut count = 0usize;
        for c in input.trim().chars().filter_map(normalise_char) {
            if let Some(slot) = chars.get_mut(count) {
                *slot = c;
            }
            count += 1;
        }
        let stored = &chars[..count.min(MAX_CHARS)];
        let Some((&first, rest)) = stored.split_first() else {
            return Err(PlateError::Empty);
        };
        if province_index(first).is_none() {
            return Err(PlateError::NoProvince {
                input: quote(input),
                found: first,
            });
        }
        match rest.first() {
            Some(c) if c.is_ascii_uppercase() => {}
            other => {
                return Err(PlateError::NoAuthorityLetter {
                    input: quote(input),
                    found: other.map_or_else(|| "nothing".to_owned(), |c| format!("{c:?}")),
                });
            }
        }
        let tail = &rest[1..];
        let tail_len = count - 2;
        let suffix = tail.last().copied().filter(|c| suffix_index(*c).is_some());
        let alnum = match suffix {
            Some(_) => &tail[..tail.len() - 1],
            None => tail,
        };
        if let Some(&bad) = alnum.iter().find(|c| code_of(**c).is_none()) {
            return Err(PlateError::InvalidCharacter {
                input: quote(input),
                found: bad,
            });
        }
        match suffix {
            Some(suffix) if tail_len != 5 => {
                return Err(PlateError::SpecialTailLength {
                    input: quote(input),
                    suffix,
                    found: tail_len - 1,
                });
            }
            None if !(5..=6).contains(&tail_len) => {
                return Err(PlateError::TailLength {
                    input: quote(input),
                    found: tail_len,
                });
            }
            _ => {}
        }
        let mut plate = Plate {
            text: [0; MAX_BYTES],
            len: 0,
        };
        for &c in stored {
            plate.push(c);
        }
        Ok(plate)
    }

    /// The normalised plate, e.g. `浙B12345`.
    pub fn as_str(&self) -> &str {
        // `text[..len]` is built from whole `char`s only, so this never falls back.
        std::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The province character.
    pub fn province(&self) -> char {
        self.as_str().chars().next().unwrap_or_default()
    }

    /// Ordinary, new-energy or special, by shape.
    pub fn kind(&self) -> PlateKind {
        let mut chars = self.as_str().chars();
        let last = chars.next_back().unwrap_or_default();
        if suffix_index(last).is_some() {
            PlateKind::Special(last)
        } else if chars.count() + 1 == MAX_CHARS {
            PlateKind::NewEnergy
        } else {
            PlateKind::Ordinary
        }
    }

    /// The packed key described in the module docs; distinct plates have distinct keys.
    pub fn key(&self) -> u64 {
        let mut chars = self.as_str().chars();
        let province = chars.next().and_then(province_index).unwrap_or_default();
        let mut key = u64::from(province) << PROVINCE_SHIFT;
        for (field, c) in chars.enumerate() {
            if let Some(code) = code_of(c) {
                key |= u64::from(code) << field_shift(field as u32);
            } else if let Some(suffix) = suffix_index(c) {
                key |= u64::from(suffix) + 1;
            }
        }
        key
    }

    /// Inverts [`Plate::key`]; `None` for a number that is not the key of any plate.
    pub fn from_key(key: u64) -> Option<Plate> {
        let province = *PROVINCES.get(usize::try_from(key >> PROVINCE_SHIFT).ok()?)?;
        let suffix = match key & ((1 << SUFFIX_BITS) - 1) {
            0 => None,
            n => Some(*SUFFIXES.get(usize::try_from(n - 1).ok()?)?),
        };
        let mut plate = Plate {
            text: [0; MAX_BYTES],
            len: 0,
        };
        plate.push(province);
        let mut body_len = 0;
        for field in 0..BODY_FIELDS {
            let code = (key >> field_shift(field)) & FIELD_MASK;
            match (code, body_len == field) {
                (0, _) => {}
                (_, false) => return None, // a gap: no plate encodes this
                (_, true) => {
                    let c = char_of(code)?;
                    if field == 0 && !c.is_ascii_uppercase() {
                        return None;
                    }
                    plate.push(c);
                    body_len += 1;
                }
            }
        }
        match (suffix, body_len) {
            (Some(s), 5) => plate.push(s),
            (None, 6 | 7) => {}
            _ => return None,
        }
        Some(plate)
    }

    /// Appends a character; callers push at most a valid plate's worth.
    fn push(&mut self, c: char) {
        let at = usize::from(self.len);
        if let Some(buf) = self.text.get_mut(at..at + c.len_utf8()) {
            self.len += c.encode_utf8(buf).len() as u8;
        }
    }
}

/// Number of body positions in which two keys differ (province and suffix are ignored).
pub fn differing_positions(a: u64, b: u64) -> u8 {
    let x = ((a ^ b) >> SUFFIX_BITS) & BODY_MASK;
    // Fold each 6-bit field onto its lowest bit; higher fields only reach bits 1..=5 of lower ones.
    let folded = x | x >> 1 | x >> 2 | x >> 3 | x >> 4 | x >> 5;
    (folded & FIELD_LOW_BITS).count_ones() as u8
}

/// Where body field `field` (0 = authority letter) sits in a key.
const fn field_shift(field: u32) -> u32 {
    SUFFIX_BITS + (BODY_FIELDS - 1 - field) * FIELD_BITS
}

/// Maps a read character to its normalised form, or `None` for a separator.
fn normalise_char(c: char) -> Option<char> {
    let c = match u32::from(c) {
        // Full-width ASCII block: same order as ASCII, offset by 0xFEE0.
        cp @ 0xFF01..=0xFF5E => char::from_u32(cp - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    match c {
        '·' | '•' | '・' | '･' | '.' | '-' | '_' => None,
        c if c.is_whitespace() => None, // includes U+3000 ideographic space
        c => Some(c.to_ascii_uppercase()),
    }
}

fn province_index(c: char) -> Option<u8> {
    PROVINCES.iter().position(|&p| p == c).map(|i| i as u8)
}

fn suffix_index(c: char) -> Option<u8> {
    SUFFIXES.iter().position(|&s| s == c).map(|i| i as u8)
}

/// 6-bit field code of an upper-case letter or digit: `0`..`9` → 1..=10, `A`..`Z` → 11..=36.
fn code_of(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0' + 1),
        'A'..='Z' => Some(c as u8 - b'A' + 11),
        _ => None,
    }
}

fn char_of(code: u64) -> Option<char> {
    match code {
        1..=10 => Some(char::from(b'0' + code as u8 - 1)),
        11..=36 => Some(char::from(b'A' + code as u8 - 11)),
        _ => None,
    }
}

/// The input as quoted in an error: trimmed, and cut short so junk cannot bloat logs.
fn quote(input: &str) -> String {
    let input = input.trim();
    match input.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

impl fmt::Display for Plate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Plate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plate({})", self.as_str())
    }
}

impl FromStr for Plate {
    type Err = PlateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Plate::parse(s)
    }
}

impl Serialize for Plate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Plate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Plate::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a confusable-class list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfusablesError {
    #[error("confusable class {index} is empty")]
    EmptyClass { index: usize },
    #[error("confusable class {class:?}: {found:?} is not a letter A-Z or digit")]
    NotAlphanumeric { class: String, found: char },
    #[error("confusable character {found:?} appears in more than one class (or twice in one)")]
    Duplicate { found: char },
}

/// Equivalence classes of characters OCR confuses, e.g. `0`/`O`/`D`/`Q`. Two reads with the
/// same canonical form (every character replaced by its class representative) may be the
/// same plate. The representative of a class is its first character as given.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Confusables {
    /// Field code → code of its class representative; identity outside any class. Sized 64 so
    /// any 6-bit field indexes it.
    rep: [u8; 64],
}

impl Confusables {
    /// No confusables: only exact matches.
    pub fn none() -> Confusables {
        let mut rep = [0u8; 64];
        for (i, r) in rep.iter_mut().enumerate() {
            *r = i as u8;
        }
        Confusables { rep }
    }

    /// Builds classes from strings such as `["0ODQ", "1I"]`. Letters may be given in lower
    /// case; a character may belong to one class only.
    pub fn from_classes<S: AsRef<str>>(classes: &[S]) -> Result<Confusables, ConfusablesError> {
        let mut out = Confusables::none();
        let mut seen = [false; 64];
        for (index, class) in classes.iter().enumerate() {
            let class = class.as_ref();
            let mut representative = None;
            for c in class.chars() {
                let upper = c.to_ascii_uppercase();
                let code = code_of(upper).ok_or_else(|| ConfusablesError::NotAlphanumeric {
                    class: class.to_owned(),
                    found: c,
                })?;
                let seen = &mut seen[usize::from(code)];
                if std::mem::replace(seen, true) {
                    return Err(ConfusablesError::Duplicate { found: upper });
                }
                out.rep[usize::from(code)] = *representative.get_or_insert(code);
            }
            if representative.is_none() {
                return Err(ConfusablesError::EmptyClass { index });
            }
        }
        Ok(out)
    }

    /// The classes, each led by its representative, in code order; `from_classes` of this
    /// gives back an equal value.
    pub fn classes(&self) -> Vec<String> {
        let mut classes = Vec::new();
        for code in 1..=36u8 {
            if self.rep[usize::from(code)] != code {
                continue;
            }
            // The representative first: `from_classes` takes a class's first character as it.
            let members: String = std::iter::once(code)
                .chain((1..=36u8).filter(|&m| m != code && self.rep[usize::from(m)] == code))
                .filter_map(|m| char_of(u64::from(m)))
                .collect();
            if members.chars().count() > 1 {
                classes.push(members);
            }
        }
        classes
    }

    /// The representative of `c`'s class (`c` itself, upper-cased, outside any class).
    pub fn representative(&self, c: char) -> char {
        let upper = c.to_ascii_uppercase();
        code_of(upper)
            .and_then(|code| char_of(u64::from(self.rep[usize::from(code)])))
            .unwrap_or(upper)
    }

    /// The canonical form of a plate as a string, for display and debugging.
    pub fn canonical(&self, plate: &Plate) -> String {
        plate
            .as_str()
            .chars()
            .map(|c| self.representative(c))
            .collect()
    }

    /// Key of the canonical form of the plate whose key is `key`: every body field replaced
    /// by its representative. Not necessarily the key of a valid plate (the authority letter
    /// may map to a digit).
    pub fn canonical_key(&self, key: u64) -> u64 {
        let mut out = key & !(BODY_MASK << SUFFIX_BITS);
        for field in 0..BODY_FIELDS {
            let shift = field_shift(field);
            let code = (key >> shift) & FIELD_MASK;
            out |= u64::from(self.rep[code as usize]) << shift;
        }
        out
    }
}

impl Default for Confusables {
    /// `0ODQ`, `1I`, `2Z`, `5S`, `8B`, `6G`: the pairs plate OCR mixes up most.
    fn default() -> Self {
        Confusables::from_classes(&["0ODQ", "1I", "2Z", "5S", "8B", "6G"])
            .unwrap_or_else(|_| Confusables::none())
    }
}

impl fmt::Debug for Confusables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Confusables").field(&self.classes()).finish()
    }
}

impl Serialize for Confusables {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.classes().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Confusables {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let classes = Vec::<String>::deserialize(deserializer)?;
        Confusables::from_classes(&classes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Plate {
        Plate::parse(s).unwrap()
    }

    #[test]
    fn spellings_normalise_to_one_plate() {
        for s in [
            "浙B12345",
            "浙B·12345",
            "浙B 12345",
            "浙b12345",
            "  浙B-12345 ",
            "浙Ｂ１２３４５",
            "浙ｂ　12345",
            "浙B•123_45",
            "浙B・12345",
            "浙B･12.345",
            "浙B－12345",
        ] {
            assert_eq!(p(s).as_str(), "浙B12345", "{s}");
        }
    }

    #[test]
    fn shapes() {
        assert_eq!(p("浙B12345").kind(), PlateKind::Ordinary);
        assert_eq!(p("浙AD12345").kind(), PlateKind::NewEnergy);
        assert_eq!(p("粤Z1234港").kind(), PlateKind::Special('港'));
        assert_eq!(p("浙B1234警").to_string(), "浙B1234警");
        assert_eq!(p("浙BIO123").as_str(), "浙BIO123"); // OCR letters are valid input
        assert_eq!(p("琼A12345").province(), '琼');
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let msg = |s: &str| Plate::parse(s).unwrap_err().to_string();
        assert_eq!(msg(""), "plate is empty");
        assert_eq!(msg(" · "), "plate is empty");
        assert_eq!(
            msg("浙B123"),
            "plate \"浙B123\": expected 5 or 6 characters after the issuing-authority letter, found 3"
        );
        assert_eq!(
            msg("浙B1234567"),
            "plate \"浙B1234567\": expected 5 or 6 characters after the issuing-authority letter, found 7"
        );
        assert!(msg("B12345").contains("must start with a province character"));
        assert!(msg("台B12345").contains("found '台'"));
        assert!(
            msg("浙112345").contains("issuing-authority letter A-Z after the province, found '1'")
        );
        assert!(msg("浙").contains("found nothing"));
        assert!(msg("浙B12#45").contains("'#' is not a letter or digit"));
        assert!(msg("浙B123警5").contains("'警' is not a letter or digit"));
        assert!(msg("浙B12345警").contains("suffix '警', found 5"));
        let long = format!("浙B{}", "9".repeat(500));
        assert!(msg(&long).contains("…\": expected 5 or 6"));
    }

    #[test]
    fn key_round_trips_and_rejects_junk() {
        for s in [
            "浙B12345",
            "京A0000Z",
            "琼ZZZZZZZ",
            "粤Z1234港",
            "沪A1234超",
            "川AD12345",
        ] {
            let plate = p(s);
            assert_eq!(Plate::from_key(plate.key()), Some(plate), "{s}");
        }
        assert_eq!(Plate::from_key(0), None);
        assert_eq!(Plate::from_key(u64::MAX), None);
        assert!(p("浙B12345").key() < p("浙B12346").key());
    }

    #[test]
    fn confusable_classes() {
        let c = Confusables::default();
        assert_eq!(c.canonical(&p("浙B8O0I2")), "浙880012");
        assert_eq!(c.representative('o'), '0');
        assert_eq!(c.representative('X'), 'X');
        assert_eq!(
            c.canonical_key(p("浙B1234S").key()),
            c.canonical_key(p("浙B12345").key())
        );
        assert_eq!(Confusables::from_classes(&c.classes()), Ok(c));
        let custom = Confusables::from_classes(&["7t", "0o"]).unwrap();
        assert_eq!(custom.representative('T'), '7');
        assert_eq!(custom.representative('D'), 'D');
        assert!(matches!(
            Confusables::from_classes(&["0O", "O"]),
            Err(ConfusablesError::Duplicate { found: 'O' })
        ));
        assert!(matches!(
            Confusables::from_classes(&["0#"]),
            Err(ConfusablesError::NotAlphanumeric { found: '#', .. })
        ));
        assert!(matches!(
            Confusables::from_classes(&[""]),
            Err(ConfusablesError::EmptyClass { index: 0 })
        ));
    }

    #[test]
    fn differing_positions_counts_fields() {
        let d = |a: &str, b: &str| differing_positions(p(a).key(), p(b).key());
        assert_eq!(d("浙B12345", "浙B12345"), 0);
        assert_eq!(d("浙B12345", "浙B1234S"), 1);
        assert_eq!(d("浙BB0012", "浙B8O0I2"), 3);
        assert_eq!(d("浙A11111", "浙BZZZZZ"), 6);
    }

    #[test]
    fn serde_is_the_normalised_string() {
        let plate: Plate = serde_json::from_str("\"浙b·12345\"").unwrap();
        assert_eq!(serde_json::to_string(&plate).unwrap(), "\"浙B12345\"");
        assert!(serde_json::from_str::<Plate>("\"浙B1\"").is_err());
        let c: Confusables = serde_json::from_str(r#"["0o","1i"]"#).unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"["0O","1I"]"#);
    }

    /// Any valid plate: province, letter, and an ordinary, new-energy or special tail.
    pub(crate) fn plate_strategy() -> impl Strategy<Value = String> {
        let alnum = "[0-9A-Z]";
        (
            0..PROVINCES.len(),
            "[A-Z]",
            prop_oneof![
                proptest::string::string_regex(&format!("{alnum}{{5,6}}")).unwrap(),
                (
                    proptest::string::string_regex(&format!("{alnum}{{4}}")).unwrap(),
                    0..SUFFIXES.len()
                )
                    .prop_map(|(t, s)| format!("{t}{}", SUFFIXES[s])),
            ],
        )
            .prop_map(|(prov, letter, tail)| format!("{}{letter}{tail}", PROVINCES[prov]))
    }

    proptest! {
        #[test]
        fn normalisation_round_trips(s in plate_strategy()) {
            let plate = Plate::parse(&s).unwrap();
            prop_assert_eq!(plate.as_str(), s.as_str());
            prop_assert_eq!(Plate::parse(&plate.to_string()), Ok(plate));
            prop_assert_eq!(Plate::from_key(plate.key()), Some(plate));
        }

        #[test]
        fn spelling_variants_normalise_alike(
            s in plate_strategy(),
            seps in proptest::collection::vec(
                prop::sample::select(vec!["", "·", " ", "-", "　", "•", "_", "．"]), 9),
            styles in proptest::collection::vec(0u8..3, 9),
        ) {
            let mut variant = String::new();
            for (i, c) in s.chars().enumerate() {
                variant.push_str(seps[i]);
                match styles[i] {
                    1 => variant.push(c.to_ascii_lowercase()),
                    2 if c.is_ascii() => variant.extend(char::from_u32(c as u32 + 0xFEE0)),
                    _ => variant.push(c),
                }
            }
            prop_assert_eq!(Plate::parse(&variant).map(|p| p.to_string()), Ok(s));
        }

        #[test]
        fn distinct_plates_have_distinct_keys(a in plate_strategy(), b in plate_strategy()) {
            let (pa, pb) = (Plate::parse(&a).unwrap(), Plate::parse(&b).unwrap());
            prop_assert_eq!(pa == pb, pa.key() == pb.key());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,20}") {
            let _ = Plate::parse(&s);
        }
    }
}
