//! Small helpers shared by the Marathon and Chronos doubles: ISO 8601 timestamps with
//! milliseconds (the format both servers print), ISO 8601 periods, and random UUIDs.
//! Hand-rolled so the crate needs no date or random-number dependency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `2015-12-01T10:03:32.003Z`, the way Marathon (Joda/Java time) and Chronos print instants.
pub(crate) fn iso_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Current time as `iso_ms`.
pub(crate) fn now_iso() -> String {
    iso_ms(now_ms())
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's civil_from_days).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(s: &str, n: usize) -> Option<i64> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Parses an ISO 8601 instant as Chronos accepts in schedules: `YYYY-MM-DDTHH:MM[:SS[.fff]]`
/// followed by `Z`, `±HH:MM`, `±HHMM` or nothing (UTC). Returns milliseconds since the epoch.
pub(crate) fn parse_iso(s: &str) -> Option<i64> {
    let (date, time) = s.split_once('T')?;
    let mut dp = date.split('-');
    let y = digits(dp.next()?, 4)?;
    let mo = digits(dp.next()?, 2)? as u32;
    let d = digits(dp.next()?, 2)? as u32;
    if dp.next().is_some() || !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let (clock, offset_ms) = split_zone(time)?;
    let (hms, frac) = match clock.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (clock, None),
    };
    let mut tp = hms.split(':');
    let h = digits(tp.next()?, 2)?;
    let mi = digits(tp.next()?, 2)?;
    let sec = match tp.next() {
        Some(x) => digits(x, 2)?,
        None => 0,
    };
    if tp.next().is_some() || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let ms = match frac {
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            let f3 = format!("{f:0<3}");
            f3[..3].parse::<i64>().ok()?
        }
        Some(_) => return None,
        None => 0,
    };
    let days = days_from_civil(y, mo, d);
    Some(days * 86_400_000 + h * 3_600_000 + mi * 60_000 + sec * 1000 + ms - offset_ms)
}

/// Splits `10:00:00+02:00` into the clock part and the zone offset in milliseconds.
fn split_zone(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix('Z') {
        return Some((clock, 0));
    }
    if let Some(pos) = time.rfind(['+', '-']) {
        let (clock, zone) = time.split_at(pos);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let z = zone[1..].replace(':', "");
        let (hh, mm) = match z.len() {
            2 => (digits(&z, 2)?, 0),
            4 => (digits(&z[..2], 2)?, digits(&z[2..], 2)?),
            _ => return None,
        };
        return Some((clock, sign * (hh * 3_600_000 + mm * 60_000)));
    }
    Some((time, 0))
}

/// An ISO 8601 period (`P1Y2M3W4DT5H6M7.5S`), as Joda-Time parses Chronos' schedule periods.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Period {
    pub years: i64,
    pub months: i64,
    pub weeks: i64,
    pub days: i64,
    pub hours: i64,
    pub minutes: i64,
    pub millis: i64,
}

impl Period {
    pub(crate) fn parse(s: &str) -> Option<Period> {
        let rest = s.strip_prefix('P')?;
        let (date, time) = match rest.split_once('T') {
            Some((d, t)) if !t.is_empty() => (d, Some(t)),
            Some(_) => return None,
            None => (rest, None),
        };
        let mut p = Period::default();
        let mut any = false;
        let mut num = String::new();
        for c in date.chars() {
            match c {
                '0'..='9' => num.push(c),
                'Y' | 'M' | 'W' | 'D' => {
                    let n: i64 = num.parse().ok()?;
                    num.clear();
                    any = true;
                    match c {
                        'Y' => p.years = n,
                        'M' => p.months = n,
                        'W' => p.weeks = n,
                        _ => p.days = n,
                    }
                }
                _ => return None,
            }
        }
        if !num.is_empty() {
            return None;
        }
        for c in time.unwrap_or("").chars() {
            match c {
                '0'..='9' | '.' => num.push(c),
                'H' | 'M' => {
                    let n: i64 = num.parse().ok()?;
                    num.clear();
                    any = true;
                    if c == 'H' {
                        p.hours = n
                    } else {
                        p.minutes = n
                    }
                }
                'S' => {
                    let n: f64 = num.parse().ok()?;
                    num.clear();
                    any = true;
                    p.millis = (n * 1000.0).round() as i64;
                }
                _ => return None,
            }
        }
        if !num.is_empty() || !any {
            return None;
        }
        Some(p)
    }

    /// `ms + self`, calendar-aware for years and months (day clamped to the month's end).
    pub(crate) fn add_to(&self, ms: i64) -> i64 {
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let total_months = y * 12 + (m as i64 - 1) + self.years * 12 + self.months;
        let ny = total_months.div_euclid(12);
        let nm = (total_months.rem_euclid(12) + 1) as u32;
        let nd = d.min(days_in_month(ny, nm));
        let days = days_from_civil(ny, nm, nd) + self.weeks * 7 + self.days;
        days * 86_400_000 + rem + self.hours * 3_600_000 + self.minutes * 60_000 + self.millis
    }

    /// True when the period adds no time (Chronos rejects such schedules as unparseable).
    pub(crate) fn is_zero(&self) -> bool {
        *self == Period::default()
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A random version-4 UUID string (splitmix64 over time, pid and a counter: unique, not secret).
pub(crate) fn uuid() -> String {
    let seed = (now_ms() as u64)
        ^ ((std::process::id() as u64) << 32)
        ^ SEQ.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    let a = splitmix(seed);
    let b = splitmix(a ^ seed.rotate_left(17));
    let hi = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000;
    let lo = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trips() {
        let ms = parse_iso("2015-12-01T10:03:32.003Z").unwrap();
        assert_eq!(iso_ms(ms), "2015-12-01T10:03:32.003Z");
        assert_eq!(
            iso_ms(parse_iso("2014-09-25T17:22:00Z").unwrap()),
            "2014-09-25T17:22:00.000Z"
        );
        assert_eq!(
            iso_ms(parse_iso("2014-09-25T19:22:00+02:00").unwrap()),
            "2014-09-25T17:22:00.000Z"
        );
        assert!(parse_iso("2014-13-25T17:22:00Z").is_none());
        assert!(parse_iso("yesterday").is_none());
    }

    #[test]
    fn periods_add_calendar_aware() {
        let p = Period::parse("PT24H").unwrap();
        let t = parse_iso("2015-01-01T00:00:00Z").unwrap();
        assert_eq!(iso_ms(p.add_to(t)), "2015-01-02T00:00:00.000Z");
        let m = Period::parse("P1M").unwrap();
        let jan31 = parse_iso("2015-01-31T00:00:00Z").unwrap();
        assert_eq!(iso_ms(m.add_to(jan31)), "2015-02-28T00:00:00.000Z");
        assert!(Period::parse("P").is_none());
        assert!(Period::parse("PT").is_none());
        assert!(Period::parse("24H").is_none());
    }

    #[test]
    fn uuids_are_v4_and_unique() {
        let a = uuid();
        let b = uuid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
