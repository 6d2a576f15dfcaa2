//! Bounded messages: a log line or error that lists keys, apps or files names the first
//! [`MAX_LISTED`] and counts the rest, so a payload with a million bad keys never becomes a
//! 128 MB line in the Consul agent's log. The JSON summary still carries every action.

use std::fmt::Display;

/// How many items a message lists before "and N more".
pub const MAX_LISTED: usize = 20;

/// `a, b, c` or `a, b, … and 7 more` (at most [`MAX_LISTED`] items).
pub fn capped_list<I, T>(items: I) -> String
where
    I: IntoIterator<Item = T>,
    T: Display,
{
    capped_list_n(items, MAX_LISTED)
}

/// [`capped_list`] with an explicit limit.
pub fn capped_list_n<I, T>(items: I, max: usize) -> String
where
    I: IntoIterator<Item = T>,
    T: Display,
{
    let mut out = String::new();
    let mut extra = 0usize;
    for (i, item) in items.into_iter().enumerate() {
        if i < max {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&item.to_string());
        } else {
            extra += 1;
        }
    }
    if extra > 0 {
        out.push_str(&format!(" and {extra} more"));
    }
    out
}

/// Cuts a single message to at most `max` bytes (on a char boundary), saying how much was cut.
pub fn capped_str(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &s[..end], s.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_lists_are_whole() {
        assert_eq!(capped_list(["a", "b"]), "a, b");
        assert_eq!(capped_list(Vec::<String>::new()), "");
    }

    #[test]
    fn long_lists_name_the_first_twenty() {
        let s = capped_list(0..1_000_000);
        assert!(s.starts_with("0, 1, 2"));
        assert!(s.ends_with("19 and 999980 more"), "{s}");
        assert!(s.len() < 200);
    }

    #[test]
    fn long_strings_are_cut_on_a_char_boundary() {
        let s = "é".repeat(100);
        let c = capped_str(&s, 5);
        assert!(c.starts_with("éé"));
        assert!(c.contains("more bytes"));
    }
}
