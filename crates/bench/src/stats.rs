//! Medians and the fixed-width table the bench prints.

use std::time::Duration;

/// The median (the mean of the two middle values for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

pub fn median_duration(values: &[Duration]) -> Option<Duration> {
    let secs: Vec<f64> = values.iter().map(Duration::as_secs_f64).collect();
    median(&secs).map(Duration::from_secs_f64)
}

/// `0.8 ms`, `12.3 ms`, `1.24 s`, `95.1 s`: three significant figures, milliseconds below 1 s.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else if ms < 100_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{:.0} s", ms / 1000.0)
    }
}

/// KiB as `812 KiB`, `14.2 MiB`, `1.20 GiB`.
pub fn fmt_kib(kib: u64) -> String {
    if kib < 1024 {
        format!("{kib} KiB")
    } else if kib < 1024 * 1024 {
        format!("{:.1} MiB", kib as f64 / 1024.0)
    } else {
        format!("{:.2} GiB", kib as f64 / (1024.0 * 1024.0))
    }
}

/// shipwatch's time over the baseline's, as `0.031` (shipwatch takes 3.1% of the baseline's
/// time), or `1.6` (slower); `-` when either is missing or the baseline took no time.
pub fn fmt_ratio(shipwatch: Option<Duration>, baseline: Option<Duration>) -> String {
    match (shipwatch, baseline) {
        (Some(s), Some(b)) if !b.is_zero() => {
            let r = s.as_secs_f64() / b.as_secs_f64();
            if r < 0.01 {
                format!("{r:.4}")
            } else if r < 10.0 {
                format!("{r:.3}")
            } else {
                format!("{r:.1}")
            }
        }
        _ => "-".into(),
    }
}

/// A plain-text table: columns padded to their widest cell, the first `left` columns
/// left-aligned (labels), the rest right-aligned (numbers).
pub fn render_table(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if i < left {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    out.push_str(&line(
        width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    out.push('\n');
    for r in rows {
        let mut cells: Vec<&str> = r.iter().map(String::as_str).collect();
        cells.resize(cols, "");
        out.push_str(&line(cells));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(
            median_duration(&[Duration::from_millis(30), Duration::from_millis(10)]),
            Some(Duration::from_millis(20))
        );
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_duration(Duration::from_micros(812)), "0.81 ms");
        assert_eq!(fmt_duration(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(fmt_duration(Duration::from_millis(1_240)), "1.24 s");
        assert_eq!(fmt_duration(Duration::from_secs(123)), "123 s");
        assert_eq!(fmt_kib(812), "812 KiB");
        assert_eq!(fmt_kib(14_541), "14.2 MiB");
        let ms = Duration::from_millis;
        assert_eq!(fmt_ratio(Some(ms(31)), Some(ms(1000))), "0.031");
        assert_eq!(fmt_ratio(Some(ms(1)), Some(ms(1000))), "0.0010");
        assert_eq!(fmt_ratio(Some(ms(1600)), Some(ms(1000))), "1.600");
        assert_eq!(fmt_ratio(None, Some(ms(1))), "-");
        assert_eq!(fmt_ratio(Some(ms(1)), Some(Duration::ZERO)), "-");
    }

    #[test]
    fn table_aligns_labels_left_numbers_right() {
        let t = render_table(
            &["case", "ms"],
            &[
                vec!["a".into(), "1.5".into()],
                vec!["long".into(), "10.25".into()],
            ],
            1,
        );
        assert_eq!(t, "case     ms\n----  -----\na       1.5\nlong  10.25\n");
    }
}
