//! Cron schedules with seconds, as the Go `robfig/cron` library reads them with its
//! seconds field enabled: `sec min hour dom month dow`.
//!
//! - Fields take `*` (or `?`), numbers, names (`jan`-`dec`, `sun`-`sat`, any case), ranges
//!   `a-b`, steps `*/n`, `a-b/n` and `a/n` (from `a` to the field's maximum), and lists.
//! - Day of week is 0-6 with 0 = Sunday.
//! - When both day of month and day of week are restricted, a day matching either fires
//!   (as in Vixie cron); when either is `*` (or a `*/1`), both must match.
//! - Descriptors: `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`),
//!   `@hourly`, and `@every <duration>` with Go durations (`90s`, `5m`, `1h30m`, `1.5h`),
//!   at least one second, counted from the previous run.
//!
//! Times are UTC.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Timelike, Utc};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A cron expression.
    Cron(Box<CronSpec>),
    /// `@every <duration>`: fires every `duration`, whole seconds, at least one.
    Every(Duration),
}

/// The six fields of a cron expression as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSpec {
    second: u64,
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Whether the day-of-month or day-of-week field was unrestricted (`*`).
    dom_star: bool,
    dow_star: bool,
}

/// Why a schedule string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron schedule {expr:?}: {reason}")]
pub struct CronError {
    /// The schedule as given.
    pub expr: String,
    /// What is wrong.
    pub reason: String,
}

struct Bounds {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Bounds = Bounds {
    name: "seconds",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Bounds = Bounds {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    name: "day of week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Schedule {
    /// Parses a 6-field expression or a descriptor.
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let fail = |reason: String| CronError {
            expr: expr.to_string(),
            reason,
        };
        let trimmed = expr.trim();
        if let Some(rest) = trimmed.strip_prefix("@every") {
            if !rest.starts_with(char::is_whitespace) {
                return Err(fail("`@every` takes a duration, e.g. `@every 5m`".into()));
            }
            let d = parse_go_duration(rest.trim()).map_err(fail)?;
            // robfig/cron rounds down to whole seconds and never fires faster than 1s.
            let d = Duration::from_secs(d.as_secs().max(1));
            return Ok(Schedule::Every(d));
        }
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 0 1 1 *",
            "@monthly" => "0 0 0 1 * *",
            "@weekly" => "0 0 0 * * 0",
            "@daily" | "@midnight" => "0 0 0 * * *",
            "@hourly" => "0 0 * * * *",
            other if other.starts_with('@') => {
                return Err(fail(format!(
                    "unknown descriptor `{trimmed}`; known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @every <duration>"
                )))
            }
            _ => trimmed,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(fail(format!(
                "expected 6 fields (second minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        }
        let (second, _) = parse_field(fields[0], &SECOND).map_err(&fail)?;
        let (minute, _) = parse_field(fields[1], &MINUTE).map_err(&fail)?;
        let (hour, _) = parse_field(fields[2], &HOUR).map_err(&fail)?;
        let (dom, dom_star) = parse_field(fields[3], &DOM).map_err(&fail)?;
        let (month, _) = parse_field(fields[4], &MONTH).map_err(&fail)?;
        let (dow, dow_star) = parse_field(fields[5], &DOW).map_err(&fail)?;
        Ok(Schedule::Cron(Box::new(CronSpec {
            second,
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })))
    }

    /// The first fire time strictly after `after`, or `None` if there is none within five
    /// years (e.g. `0 0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => {
                let base = after.with_nanosecond(0)?;
                Some(base + TimeDelta::from_std(*d).ok()?)
            }
            Schedule::Cron(spec) => spec.next_after(after.naive_utc()).map(|t| t.and_utc()),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "@every {}s", d.as_secs()),
            Schedule::Cron(_) => f.write_str("cron"),
        }
    }
}

fn has(bits: u64, n: u32) -> bool {
    bits & (1u64 << n) != 0
}

impl CronSpec {
    fn day_matches(&self, t: &NaiveDateTime) -> bool {
        let dom = has(self.dom, t.day());
        let dow = has(self.dow, t.weekday().num_days_from_sunday());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// robfig/cron's search: advance the coarsest field that does not match, resetting the
    /// finer ones, and start over whenever a field wraps.
    fn next_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut t = after.with_nanosecond(0)? + TimeDelta::seconds(1);
        let year_limit = t.year() + 5;
        let mut added = false;
        'wrap: loop {
            if t.year() > year_limit {
                return None;
            }
            while !has(self.month, t.month()) {
                if !added {
                    added = true;
                    t = NaiveDate::from_ymd_opt(t.year(), t.month(), 1)?.and_hms_opt(0, 0, 0)?;
                }
                t = t.checked_add_months(chrono::Months::new(1))?;
                if t.month() == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&t) {
                if !added {
                    added = true;
                    t = t.date().and_hms_opt(0, 0, 0)?;
                }
                t += TimeDelta::days(1);
                if t.day() == 1 {
                    continue 'wrap;
                }
            }
            while !has(self.hour, t.hour()) {
                if !added {
                    added = true;
                    t = t.date().and_hms_opt(t.hour(), 0, 0)?;
                }
                t += TimeDelta::hours(1);
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while !has(self.minute, t.minute()) {
                if !added {
                    added = true;
                    t = t.with_second(0)?;
                }
                t += TimeDelta::minutes(1);
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            while !has(self.second, t.second()) {
                added = true;
                t += TimeDelta::seconds(1);
                if t.second() == 0 {
                    continue 'wrap;
                }
            }
            return Some(t);
        }
    }
}

/// Parses one field into a bit set, and whether it was unrestricted for the day rule.
fn parse_field(field: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| {
                    format!("{} field `{field}`: step `{s}` is not a number", b.name)
                })?;
                if step == 0 {
                    return Err(format!(
                        "{} field `{field}`: step must be at least 1",
                        b.name
                    ));
                }
                (r, Some(step))
            }
            None => (part, None),
        };
        let (start, end, is_star) = if range == "*" || range == "?" {
            (b.min, b.max, true)
        } else if let Some((lo, hi)) = range.split_once('-') {
            (value(lo, field, b)?, value(hi, field, b)?, false)
        } else {
            let v = value(range, field, b)?;
            // `a/n` runs from a to the maximum
            (v, if step.is_some() { b.max } else { v }, false)
        };
        if start > end {
            return Err(format!(
                "{} field `{field}`: range start {start} is beyond its end {end}",
                b.name
            ));
        }
        let step = step.unwrap_or(1);
        // As in robfig/cron: `*/n` with n > 1 counts as restricted for the day rule.
        if is_star && step == 1 {
            star = true;
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

fn value(text: &str, field: &str, b: &Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let v = match b.names.iter().position(|n| *n == lower) {
        Some(i) => i as u32 + if b.min == 0 { 0 } else { 1 },
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

/// Parses a Go duration string (`300ms`, `1.5h`, `2h45m`).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("duration `{text}`: expected a number at `{rest}`"));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("duration `{text}`: `{}` is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "duration `{text}`: missing unit (ns, us, ms, s, m, h)"
                ))
            }
            other => return Err(format!("duration `{text}`: unknown unit `{other}`")),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 1e12 {
        return Err(format!("duration `{text}` is too long"));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_fire_times() {
        // (expression, after, expected next)
        let table = [
            // the seed's defaults: hourly on the hour, and daily at 01:00
            (
                "0 0 */1 * * *",
                "2024-03-10T10:15:30Z",
                "2024-03-10T11:00:00Z",
            ),
            (
                "0 0 */1 * * *",
                "2024-12-31T23:00:00Z",
                "2025-01-01T00:00:00Z",
            ),
            (
                "0 0 1 * * *",
                "2024-03-10T00:59:59Z",
                "2024-03-10T01:00:00Z",
            ),
            (
                "0 0 1 * * *",
                "2024-03-10T01:00:00Z",
                "2024-03-11T01:00:00Z",
            ),
            (
                "0 */5 * * * *",
                "2024-03-10T10:07:00Z",
                "2024-03-10T10:10:00Z",
            ),
            (
                "*/15 * * * * *",
                "2024-03-10T10:07:44Z",
                "2024-03-10T10:07:45Z",
            ),
            (
                "* * * * * *",
                "2024-03-10T10:07:44.900Z",
                "2024-03-10T10:07:45Z",
            ),
            (
                "30 15 10 * * mon-fri",
                "2024-03-08T11:00:00Z",
                "2024-03-11T10:15:30Z",
            ),
            (
                "0 0 0 * * 0",
                "2024-03-10T00:00:00Z",
                "2024-03-17T00:00:00Z",
            ),
            (
                "0 0 0 1,15 * *",
                "2024-03-02T00:00:00Z",
                "2024-03-15T00:00:00Z",
            ),
            // day of month and day of week both restricted: either matches (13th or a Friday)
            (
                "0 0 0 13 * 5",
                "2024-03-01T00:00:00Z",
                "2024-03-08T00:00:00Z",
            ),
            (
                "0 0 0 13 * fri",
                "2024-03-09T00:00:00Z",
                "2024-03-13T00:00:00Z",
            ),
            // `*/1` keeps the star meaning; `*/2` does not
            (
                "0 0 0 */1 * 1",
                "2024-03-01T00:00:00Z",
                "2024-03-04T00:00:00Z",
            ),
            (
                "0 0 0 29 2 *",
                "2023-03-01T00:00:00Z",
                "2024-02-29T00:00:00Z",
            ),
            (
                "0 0 12 31 * *",
                "2024-04-01T00:00:00Z",
                "2024-05-31T12:00:00Z",
            ),
            (
                "0 0 9-17/4 * * *",
                "2024-03-10T13:00:00Z",
                "2024-03-10T17:00:00Z",
            ),
            (
                "0 0 9-17/4 * * *",
                "2024-03-10T17:00:00Z",
                "2024-03-11T09:00:00Z",
            ),
            (
                "15/20 * * * * *",
                "2024-03-10T10:00:36Z",
                "2024-03-10T10:00:55Z",
            ),
            (
                "0 0 0 1 JAN-MAR,dec ?",
                "2024-04-01T00:00:00Z",
                "2024-12-01T00:00:00Z",
            ),
            ("@hourly", "2024-03-10T10:59:59Z", "2024-03-10T11:00:00Z"),
            ("@daily", "2024-03-10T10:00:00Z", "2024-03-11T00:00:00Z"),
            ("@weekly", "2024-03-10T10:00:00Z", "2024-03-17T00:00:00Z"),
            ("@monthly", "2024-03-10T10:00:00Z", "2024-04-01T00:00:00Z"),
            ("@yearly", "2024-03-10T10:00:00Z", "2025-01-01T00:00:00Z"),
            (
                "@every 5m",
                "2024-03-10T10:00:07.250Z",
                "2024-03-10T10:05:07Z",
            ),
            (
                "@every 1h30m",
                "2024-03-10T10:00:00Z",
                "2024-03-10T11:30:00Z",
            ),
            (
                "@every 1.5s",
                "2024-03-10T10:00:00Z",
                "2024-03-10T10:00:01Z",
            ),
            (
                "@every 100ms",
                "2024-03-10T10:00:00Z",
                "2024-03-10T10:00:01Z",
            ),
        ];
        for (expr, after, expected) in table {
            let schedule = Schedule::parse(expr).unwrap_or_else(|e| panic!("{e}"));
            let next = schedule.next_after(at(after));
            assert_eq!(next, Some(at(expected)), "{expr} after {after}");
        }
    }

    #[test]
    fn impossible_dates_have_no_next_time() {
        let schedule = Schedule::parse("0 0 0 30 2 *").unwrap();
        assert_eq!(schedule.next_after(at("2024-01-01T00:00:00Z")), None);
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let cases = [
            ("0 */5 * * *", "expected 6 fields"),
            ("0 0 0 * * * *", "expected 6 fields"),
            ("60 * * * * *", "seconds field `60`: 60 is outside 0-59"),
            ("0 0 24 * * *", "hours field"),
            ("0 0 0 0 * *", "day of month field `0`: 0 is outside 1-31"),
            ("0 0 0 * 13 *", "month field"),
            ("0 0 0 * * 7", "day of week field `7`: 7 is outside 0-6"),
            ("0 0 0 * * funday", "`funday` is not a number or a name"),
            ("0 0 5-2 * * *", "beyond its end"),
            ("*/0 * * * * *", "step must be at least 1"),
            ("*/x * * * * *", "step `x` is not a number"),
            ("@fortnightly", "unknown descriptor"),
            ("@every", "takes a duration"),
            ("@every 5", "missing unit"),
            ("@every 5d", "unknown unit `d`"),
            ("", "expected 6 fields"),
        ];
        for (expr, expected) in cases {
            let err = Schedule::parse(expr).unwrap_err().to_string();
            assert!(err.contains(expected), "{expr:?}: {err}");
        }
    }
}
