//! Local time in a zone, as Go's `time` package computes it.
//!
//! robfig/cron steps through a schedule's local time with Go's `time.Date` and `AddDate`,
//! so where it fires across daylight-saving changes follows how Go resolves a local time
//! that a transition skips or repeats. chrono leaves that choice to the caller; Go's is
//! reproduced here so that the fire times are robfig's.

use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// The calendar fields of `t` in `zone`.
pub(super) fn local(t: DateTime<Utc>, zone: Tz) -> NaiveDateTime {
    t.with_timezone(&zone).naive_local()
}

/// Go's `time.Date(year, month, day, hour, min, sec, 0, zone)`.
///
/// Fields out of range carry over (month 13 is January of the next year, day 32 runs into
/// the next month). A local time that does not exist, or exists twice, takes the offset in
/// force at that wall-clock reading taken as UTC, unless that offset does not hold at the
/// instant it gives, in which case the offset at that instant: Go's rule, which puts New
/// York's missing 02:30 at 01:30 EST and Berlin's at 03:30 CEST, and picks the first of two
/// repeated times.
pub(super) fn date(
    zone: Tz,
    year: i32,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
) -> Option<DateTime<Utc>> {
    let months = month - 1;
    let year = year + months.div_euclid(12) as i32;
    let month = months.rem_euclid(12) as u32 + 1;
    let wall = NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 0)?
        + TimeDelta::try_days(day - 1)?
        + TimeDelta::try_seconds(hour * 3600 + minute * 60 + second)?;
    Some(from_wall_clock(zone, wall))
}

/// Go's `t.AddDate(0, months, days)`: the same wall-clock time that many months and days
/// later in `zone`, resolved as [`date`] resolves it.
pub(super) fn add_date(
    zone: Tz,
    t: DateTime<Utc>,
    months: i64,
    days: i64,
) -> Option<DateTime<Utc>> {
    let l = local(t, zone);
    date(
        zone,
        l.year(),
        i64::from(l.month()) + months,
        i64::from(l.day()) + days,
        l.hour().into(),
        l.minute().into(),
        l.second().into(),
    )
}

/// The instant a wall-clock reading in `zone` stands for, by Go's rule (see [`date`]).
fn from_wall_clock(zone: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    let offset_at = |instant: NaiveDateTime| {
        i64::from(
            zone.offset_from_utc_datetime(&instant)
                .fix()
                .local_minus_utc(),
        )
    };
    // Go checks whether the guessed offset holds at the instant it gives and otherwise
    // takes the offset at that instant; either way that is the offset used.
    let guess = offset_at(wall);
    let offset = offset_at(wall - TimeDelta::seconds(guess));
    (wall - TimeDelta::seconds(offset)).and_utc()
}
