//! robfig/cron v3's search for the next fire time (`SpecSchedule.Next`), step for step.
//!
//! It advances the coarsest field that does not match, resetting the finer ones, and starts
//! over whenever a field wraps. Months and days move in local calendar time, hours, minutes
//! and seconds in elapsed time. That is what makes a time skipped by spring-forward not fire
//! that day, and a time in the hour repeated at fall-back fire twice.

use chrono::{DateTime, Datelike, SubsecRound, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;

use super::fields::FieldSets;
use super::local_time::{add_date, date, local};

fn has(bits: u64, n: u32) -> bool {
    bits & (1u64 << n) != 0
}

impl FieldSets {
    fn day_matches(&self, t: DateTime<Utc>, zone: Tz) -> bool {
        let l = local(t, zone);
        let dom = has(self.dom, l.day());
        let dow = has(self.dow, l.weekday().num_days_from_sunday());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

/// The first fire time strictly after `after`, or `None` if there is none within five years.
pub(super) fn next_after(f: &FieldSets, zone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let field = |t: DateTime<Utc>| local(t, zone);
    // Start at the earliest possible time: the upcoming whole second.
    let mut t = after.trunc_subsecs(0) + TimeDelta::seconds(1);
    let year_limit = field(t).year() + 5;
    let mut added = false;
    'wrap: loop {
        if field(t).year() > year_limit {
            return None;
        }
        while !has(f.month, field(t).month()) {
            let l = field(t);
            if !added {
                added = true;
                t = date(zone, l.year(), l.month().into(), 1, 0, 0, 0)?;
            }
            t = add_date(zone, t, 1, 0)?;
            if field(t).month() == 1 {
                continue 'wrap;
            }
        }
        while !f.day_matches(t, zone) {
            let l = field(t);
            if !added {
                added = true;
                t = date(zone, l.year(), l.month().into(), l.day().into(), 0, 0, 0)?;
            }
            let before = t;
            t = add_date(zone, t, 0, 1)?;
            // Where a whole day is skipped (Samoa dropped 30 December 2011), Go's `AddDate`
            // lands back on the same instant and robfig/cron never returns; step a day of
            // elapsed time instead. The one place this search leaves robfig's steps.
            if t <= before {
                t = before + TimeDelta::days(1);
            }
            // Where midnight does not exist (the clocks jump from 23:59 or to 01:00), bring
            // the time back to the start of the day, as robfig does.
            let hour = i64::from(field(t).hour());
            if hour != 0 {
                t += if hour > 12 {
                    TimeDelta::hours(24 - hour)
                } else {
                    TimeDelta::hours(-hour)
                };
            }
            if field(t).day() == 1 {
                continue 'wrap;
            }
        }
        while !has(f.hour, field(t).hour()) {
            if !added {
                added = true;
                let l = field(t);
                t = date(
                    zone,
                    l.year(),
                    l.month().into(),
                    l.day().into(),
                    l.hour().into(),
                    0,
                    0,
                )?;
            }
            t += TimeDelta::hours(1);
            if field(t).hour() == 0 {
                continue 'wrap;
            }
        }
        while !has(f.minute, field(t).minute()) {
            if !added {
                added = true;
                t = truncate(t, 60);
            }
            t += TimeDelta::minutes(1);
            if field(t).minute() == 0 {
                continue 'wrap;
            }
        }
        while !has(f.second, field(t).second()) {
            if !added {
                added = true;
                t = truncate(t, 1);
            }
            t += TimeDelta::seconds(1);
            if field(t).second() == 0 {
                continue 'wrap;
            }
        }
        return Some(t);
    }
}

/// Go's `Time.Truncate`: rounds down in elapsed time, not in local time.
fn truncate(t: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    let secs = t.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(seconds), 0).unwrap_or(t)
}
