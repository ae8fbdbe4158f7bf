//! The six fields of an expression, read with robfig/cron's grammar and turned into bit sets
//! by croner.
//!
//! croner accepts more than robfig/cron does (`L`, `W`, `#`, a year field, `7` for Sunday,
//! `?` only in the day fields) and counts a field as unrestricted only when it is exactly `*`.
//! So each field is first read here with robfig's rules and robfig's errors, and handed to
//! croner as plain numeric ranges (`start-end/step`) that both read alike; whether the field
//! counts as `*` for the day rule is decided here, as robfig decides it.

use croner::parser::{CronParser, Seconds, Year};

/// One field's name, bounds and names.
struct Bounds {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Bounds; 6] = [
    Bounds {
        name: "seconds",
        min: 0,
        max: 59,
        names: &[],
    },
    Bounds {
        name: "minutes",
        min: 0,
        max: 59,
        names: &[],
    },
    Bounds {
        name: "hours",
        min: 0,
        max: 23,
        names: &[],
    },
    Bounds {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    Bounds {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    },
    Bounds {
        name: "day of week",
        min: 0,
        max: 6,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    },
];

/// The fields of an expression as bit sets (bit n set = value n fires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldSets {
    pub second: u64,
    pub minute: u64,
    pub hour: u64,
    pub dom: u64,
    pub month: u64,
    pub dow: u64,
    /// Whether day of month counts as unrestricted (`*`, `?`, `*/1`) for the day rule.
    pub dom_star: bool,
    /// Whether day of week counts as unrestricted for the day rule.
    pub dow_star: bool,
}

/// Reads six whitespace-separated fields; the error names the field and what is wrong.
pub(super) fn parse(fields: &[&str]) -> Result<FieldSets, String> {
    if fields.len() != 6 {
        return Err(format!(
            "expected 6 fields (second minute hour day-of-month month day-of-week), found {}",
            fields.len()
        ));
    }
    let mut numeric = Vec::with_capacity(6);
    let mut stars = [false; 6];
    for (i, (text, bounds)) in fields.iter().zip(&FIELDS).enumerate() {
        let (parts, star) = read_field(text, bounds)?;
        numeric.push(parts);
        stars[i] = star;
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Disallowed)
        .build();
    let cron = parser
        .parse(&numeric.join(" "))
        .map_err(|e| format!("`{}`: {e}", fields.join(" ")))?;
    let bits = |values: Vec<u16>| values.into_iter().fold(0u64, |acc, v| acc | 1 << v);
    let p = &cron.pattern;
    Ok(FieldSets {
        second: bits(p.seconds.values()),
        minute: bits(p.minutes.values()),
        hour: bits(p.hours.values()),
        dom: bits(p.days.values()),
        month: bits(p.months.values()),
        dow: bits(p.days_of_week.values()),
        dom_star: stars[3],
        dow_star: stars[5],
    })
}

/// One field in robfig's grammar: comma-separated parts, each `*`/`?`, a value or a range
/// `a-b`, optionally `/step` (a single value with a step runs to the field's maximum).
/// Returns the field as numeric ranges for croner, and whether it counts as `*`.
fn read_field(field: &str, b: &Bounds) -> Result<(String, bool), String> {
    let mut parts = Vec::new();
    let mut star = false;
    for part in field.split(',') {
        let fail = |what: String| format!("{} field `{field}`: {what}", b.name);
        let (range, step) = match part.split_once('/') {
            Some((_, s)) if s.contains('/') => {
                return Err(fail(format!("too many slashes in `{part}`")))
            }
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| fail(format!("step `{s}` is not a number")))?;
                if step == 0 {
                    return Err(fail("step must be at least 1".into()));
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (start, end, is_star) = if range == "*" || range == "?" {
            (b.min, b.max, true)
        } else if let Some((lo, hi)) = range.split_once('-') {
            if hi.contains('-') {
                return Err(fail(format!("too many hyphens in `{part}`")));
            }
            (value(lo, field, b)?, value(hi, field, b)?, false)
        } else {
            let v = value(range, field, b)?;
            (v, if step.is_some() { b.max } else { v }, false)
        };
        if start > end {
            return Err(fail(format!("range start {start} is beyond its end {end}")));
        }
        let step = step.unwrap_or(1);
        // robfig: `*/n` with n > 1 counts as restricted for the day rule; `*/1` does not.
        if is_star && step == 1 {
            star = true;
        }
        parts.push(format!("{start}-{end}/{step}"));
    }
    Ok((parts.join(","), star))
}

fn value(text: &str, field: &str, b: &Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let v = match b.names.iter().position(|n| *n == lower) {
        Some(i) => i as u32 + b.min,
        None => text.parse::<u32>().map_err(|_| {
            format!(
                "{} field `{field}`: `{text}` is not a number or a name",
                b.name
            )
        })?,
    };
    if v < b.min || v > b.max {
        return Err(format!(
            "{} field `{field}`: {v} is outside {}-{}",
            b.name, b.min, b.max
        ));
    }
    Ok(v)
}
