//! Chronos schedules (`R[n]/<start>/<period>`, regex `(R[0-9]*)/(.*)/(P.*)`, reference §3) and the
//! equality rule that survives Chronos rewriting them as jobs run.
//!
//! Chronos moves the start forward by whole periods and decrements `Rn` after each run
//! (`JobUtils.skipForward`), and prints the start with milliseconds. So a live schedule is the
//! same as the desired one when:
//! - the periods are equal (`PT2M` = `PT120S`),
//! - the repetitions are both unbounded (`R`), or the live count is not above the desired one,
//! - and the live start is the desired start, or later by a whole number of periods (for periods
//!   with months or years: reached by adding the period repeatedly). An empty desired start
//!   ("now") matches any start.
//!
//! A start moved earlier, or off the period's grid (e.g. a daily job moved from 02:00 to 03:00),
//! is a change.

/// A parsed `R[n]/start/period`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// `None` = repeat forever (`R`).
    pub repetitions: Option<u64>,
    /// Seconds since the epoch (with fractions); `None` = empty start ("now").
    pub start: Option<f64>,
    pub period: Period,
}

/// An ISO 8601 duration split into calendar and fixed parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    pub months: i64,
    pub seconds: f64,
}

/// Parses a schedule; the error says what is wrong.
pub fn parse(s: &str) -> Result<Schedule, String> {
    let mut parts = s.splitn(3, '/');
    let (r, start, period) = match (parts.next(), parts.next(), parts.next()) {
        (Some(r), Some(st), Some(p)) => (r, st, p),
        _ => {
            return Err(format!(
                "schedule {s:?} must look like R[n]/<start>/<period>"
            ))
        }
    };
    let repetitions = match r.strip_prefix('R') {
        Some("") => None,
        Some(n) => Some(
            n.parse::<u64>()
                .map_err(|_| format!("schedule {s:?}: bad repetitions {r:?}"))?,
        ),
        None => return Err(format!("schedule {s:?} must start with R")),
    };
    let start = if start.is_empty() {
        None
    } else {
        Some(parse_time(start).ok_or_else(|| format!("schedule {s:?}: bad start time {start:?}"))?)
    };
    let period =
        parse_period(period).ok_or_else(|| format!("schedule {s:?}: bad period {period:?}"))?;
    if period.months == 0 && period.seconds <= 0.0 {
        return Err(format!("schedule {s:?}: the period must be positive"));
    }
    Ok(Schedule {
        repetitions,
        start,
        period,
    })
}

/// The equality rule of the module doc. Unparseable schedules compare as strings.
pub fn same_schedule(desired: &str, live: &str) -> bool {
    if desired == live {
        return true;
    }
    let (Ok(d), Ok(l)) = (parse(desired), parse(live)) else {
        return false;
    };
    if d.period != l.period {
        return false;
    }
    match (d.repetitions, l.repetitions) {
        (None, None) => {}
        (Some(dn), Some(ln)) if ln <= dn => {}
        _ => return false,
    }
    let (ds, ls) = match (d.start, l.start) {
        (None, _) => return true,
        (Some(_), None) => return false,
        (Some(ds), Some(ls)) => (ds, ls),
    };
    const EPS: f64 = 0.001;
    if ls + EPS < ds {
        return false;
    }
    if d.period.months == 0 {
        let k = ((ls - ds) / d.period.seconds).round();
        return (ds + k * d.period.seconds - ls).abs() < EPS;
    }
    // Calendar periods: step from the desired start (bounded; a monthly job over a century is
    // 1200 steps).
    let mut t = ds;
    for _ in 0..100_000 {
        if (t - ls).abs() < EPS {
            return true;
        }
        if t > ls {
            return false;
        }
        t = add_period(t, d.period);
    }
    false
}

/// `P[nY][nM][nW][nD][T[nH][nM][nS]]` (fractions allowed on seconds).
pub fn parse_period(s: &str) -> Option<Period> {
    let rest = s.strip_prefix('P')?;
    if rest.is_empty() {
        return None;
    }
    let mut months = 0i64;
    let mut seconds = 0f64;
    let mut in_time = false;
    let mut num = String::new();
    let mut any = false;
    for c in rest.chars() {
        match c {
            'T' if !in_time && num.is_empty() => in_time = true,
            '0'..='9' | '.' | ',' => num.push(if c == ',' { '.' } else { c }),
            unit => {
                let n: f64 = num.parse().ok()?;
                num.clear();
                any = true;
                match (in_time, unit) {
                    (false, 'Y') => months += (n as i64) * 12,
                    (false, 'M') => months += n as i64,
                    (false, 'W') => seconds += n * 7.0 * 86400.0,
                    (false, 'D') => seconds += n * 86400.0,
                    (true, 'H') => seconds += n * 3600.0,
                    (true, 'M') => seconds += n * 60.0,
                    (true, 'S') => seconds += n,
                    _ => return None,
                }
            }
        }
    }
    if !num.is_empty() || !any {
        return None;
    }
    Some(Period { months, seconds })
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn add_period(t: f64, p: Period) -> f64 {
    let mut t = t;
    if p.months != 0 {
        let days = (t / 86400.0).floor() as i64;
        let secs_of_day = t - (days as f64) * 86400.0;
        let (y, m, d) = civil_from_days(days);
        let total = y * 12 + (m - 1) + p.months;
        let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) + 1);
        let (fy, fm) = if nm == 12 { (ny + 1, 1) } else { (ny, nm + 1) };
        let dim = days_from_civil(fy, fm, 1) - days_from_civil(ny, nm, 1);
        t = (days_from_civil(ny, nm, d.min(dim)) as f64) * 86400.0 + secs_of_day;
    }
    t + p.seconds
}

/// `YYYY-MM-DDTHH:MM[:SS[.fff]][Z|±HH[:MM]]` → seconds since the epoch (no zone = UTC, as
/// Chronos prints it).
pub fn parse_time(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) && !t.is_empty() {
            t.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 16 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi) = (num(11..13)?, num(14..16)?);
    if b[13] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 24 || mi > 59 {
        return None;
    }
    let mut i = 16;
    let mut sec = 0f64;
    if b.get(i) == Some(&b':') {
        let mut j = i + 1;
        while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
            j += 1;
        }
        sec = s.get(i + 1..j)?.parse().ok()?;
        i = j;
    }
    let offset = match s.get(i..)? {
        "" | "Z" | "z" => 0i64,
        z if z.starts_with('+') || z.starts_with('-') => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
            if !(digits.len() == 2 || digits.len() == 4)
                || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            let oh: i64 = digits[..2].parse().ok()?;
            let om: i64 = if digits.len() == 4 {
                digits[2..].parse().ok()?
            } else {
                0
            };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some((days * 86400 + h * 3600 + mi * 60 - offset) as f64 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_docs_schedule() {
        let s = parse("R/2014-09-25T17:22:00Z/PT2M").unwrap();
        assert_eq!(s.repetitions, None);
        assert_eq!(s.period.seconds, 120.0);
        assert_eq!(parse_time("1970-01-02T00:00:00Z"), Some(86400.0));
        assert_eq!(parse_time("1970-01-01T02:00:00.500+02:00"), Some(0.5));
        assert!(parse("2014/PT2M").is_err());
        assert!(parse("R/nope/PT2M").is_err());
        assert!(parse("R//P").is_err());
        assert!(parse("R5//PT0S").is_err());
    }

    #[test]
    fn advanced_schedules_are_the_same() {
        let d = "R/2014-09-25T17:22:00Z/PT2M";
        assert!(same_schedule(d, "R/2014-09-25T17:22:00.000Z/PT2M"));
        assert!(same_schedule(d, "R/2026-11-24T22:02:00.000Z/PT2M"));
        assert!(same_schedule(d, "R/2014-09-25T19:24:00.000+02:00/PT120S"));
        assert!(same_schedule(
            "R10/2026-01-01T00:00:00Z/P1D",
            "R7/2026-01-04T00:00:00.000Z/P1D"
        ));
        assert!(same_schedule("R//PT1H", "R/2026-11-24T10:13:00.000Z/PT1H"));
        assert!(same_schedule(
            "R/2026-01-15T00:00:00Z/P1M",
            "R/2026-03-15T00:00:00.000Z/P1M"
        ));
    }

    #[test]
    fn real_changes_are_seen() {
        let d = "R/2026-01-01T03:00:00Z/P1D";
        assert!(
            !same_schedule(d, "R/2026-11-24T02:00:00.000Z/P1D"),
            "off the grid"
        );
        assert!(
            !same_schedule(d, "R/2025-12-31T03:00:00.000Z/P1D"),
            "moved earlier"
        );
        assert!(
            !same_schedule(d, "R/2026-01-01T03:00:00.000Z/PT12H"),
            "other period"
        );
        assert!(!same_schedule(
            "R5/2026-01-01T03:00:00Z/P1D",
            "R6/2026-01-01T03:00:00Z/P1D"
        ));
        assert!(!same_schedule(
            "R/2026-01-01T03:00:00Z/P1D",
            "R5/2026-01-01T03:00:00Z/P1D"
        ));
    }
}
