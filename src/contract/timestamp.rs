//! Timestamps in outgoing JSON: RFC 3339 in UTC, exactly as chrono's `Serialize` writes them,
//! but without going through `core::fmt`.
//!
//! chrono formats a `DateTime` through `Display`, one `write_char` at a time. A new task's
//! messages carry six timestamps (the Task's three deadlines and its sighting's, the Alert's,
//! the history row's sighting), and in `cargo bench --bench store` chrono's formatting is most
//! of the time spent building those messages. Use it on hot fields with
//! `#[serde(serialize_with = "crate::contract::timestamp::serialize")]`; reading is chrono's own.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

/// Serializes `t` as chrono does: `YYYY-MM-DDTHH:MM:SS`, then a fraction of 3, 6 or 9 digits
/// (the fewest that hold the nanoseconds exactly; none when they are zero), then `Z`.
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 30];
    match write(t, &mut buf) {
        // Only ASCII digits and separators are written.
        Some(len) => s.serialize_str(std::str::from_utf8(&buf[..len]).expect("ASCII")),
        // Years outside 0..=9999 and leap seconds: rare enough for chrono's own path.
        None => t.serialize(s),
    }
}

/// Writes `t` into `buf`; returns the length, or `None` where chrono's format differs from
/// the fixed-width one written here.
fn write(t: &DateTime<Utc>, buf: &mut [u8; 30]) -> Option<usize> {
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        return None;
    }
    let mut at = 0;
    let mut put = |value: u32, digits: u32, sep: Option<u8>| {
        for i in (0..digits).rev() {
            buf[at] = b'0' + ((value / 10u32.pow(i)) % 10) as u8;
            at += 1;
        }
        if let Some(sep) = sep {
            buf[at] = sep;
            at += 1;
        }
        at
    };
    put(year, 4, Some(b'-'));
    put(t.month(), 2, Some(b'-'));
    put(t.day(), 2, Some(b'T'));
    put(t.hour(), 2, Some(b':'));
    put(t.minute(), 2, Some(b':'));
    let fraction = match nanos {
        0 => None,
        n if n % 1_000_000 == 0 => Some((n / 1_000_000, 3)),
        n if n % 1_000 == 0 => Some((n / 1_000, 6)),
        n => Some((n, 9)),
    };
    let end = match fraction {
        None => put(t.second(), 2, Some(b'Z')),
        Some((value, digits)) => {
            put(t.second(), 2, Some(b'.'));
            put(value, digits, Some(b'Z'))
        }
    };
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[derive(Serialize)]
    struct Ours(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    fn agree(t: DateTime<Utc>) {
        assert_eq!(
            serde_json::to_string(&Ours(t)).unwrap(),
            serde_json::to_string(&t).unwrap(),
            "{t:?}"
        );
    }

    #[test]
    fn writes_what_chrono_writes() {
        let t = Utc.with_ymd_and_hms(2024, 12, 3, 2, 15, 0).unwrap();
        assert_eq!(
            serde_json::to_string(&Ours(t)).unwrap(),
            "\"2024-12-03T02:15:00Z\""
        );
        for nanos in [
            0,
            1,
            999,
            1_000,
            120_000,
            5_000_000,
            999_999_999,
            123_456_789,
        ] {
            agree(t + chrono::Duration::nanoseconds(nanos));
        }
        // Outside the fixed-width range, chrono's own path.
        agree(Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap());
        agree(Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap());
        agree(Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap());
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        agree(leap);
    }

    proptest! {
        #[test]
        fn agrees_with_chrono_everywhere(
            secs in -62_167_219_200i64..253_402_300_800,
            nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000, (0u32..1000).prop_map(|n| n * 1_000_000)],
        ) {
            agree(DateTime::from_timestamp(secs, nanos).unwrap());
        }
    }
}
