use super::*;
use chrono::DateTime;

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

/// robfig/cron never returns here (its day step lands back on the skipped day); this
/// schedule steps over the missing day and fires on the next 31st that exists.
#[test]
fn a_day_that_a_zone_skipped_does_not_stop_the_search() {
    let schedule = Schedule::parse("CRON_TZ=Pacific/Apia 0 0 0 31 * *").unwrap();
    let next = schedule.next_after(at("2011-12-29T10:00:00Z"));
    // 31 December 2011, 00:00 at +14:00, the day after Samoa's 29 December.
    assert_eq!(next, Some(at("2011-12-31T00:00:00+14:00")));
    let daily = Schedule::parse("CRON_TZ=Pacific/Apia 0 0 12 * * *").unwrap();
    assert_eq!(
        daily.upcoming(at("2011-12-29T10:00:00Z"), 2),
        vec![
            at("2011-12-29T12:00:00-10:00"),
            at("2011-12-31T12:00:00+14:00")
        ]
    );
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
        ("0 0 0 * * 1#2", "`1#2` is not a number or a name"),
        ("0 0 0 L * *", "`L` is not a number or a name"),
        ("/10 * * * * *", "`` is not a number or a name"),
        ("1/2/3 * * * * *", "too many slashes"),
        (
            "CRON_TZ=Mars/Olympus 0 0 0 * * *",
            "unknown time zone `Mars/Olympus`",
        ),
        ("TZ=Europe/Berlin", "must be followed by an expression"),
        ("CRON_TZ=Local @daily", "depends on the machine"),
    ];
    for (expr, expected) in cases {
        let err = Schedule::parse(expr).unwrap_err().to_string();
        assert!(err.contains(expected), "{expr:?}: {err}");
    }
}

/// Every line of `robfig_cases.tsv` is an expression, a start and what robfig/cron v3.0.1
/// itself computed for them (`xtask/robfig-oracle`): the next fire times, `never`, or an
/// error. Across zones whose clocks skip or repeat an hour, half an hour (Lord Howe) or a
/// midnight (Havana, Sao Paulo, Santiago), this schedule must agree with it everywhere.
#[test]
fn agrees_with_robfig_cron_on_every_recorded_case() {
    let cases = include_str!("robfig_cases.tsv");
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for line in cases.lines() {
        let mut cols = line.split('\t');
        let (Some(expr), Some(start), Some(expected)) = (cols.next(), cols.next(), cols.next())
        else {
            panic!("bad fixture line {line:?}");
        };
        checked += 1;
        let parsed = Schedule::parse(expr);
        if let Some(reason) = expected.strip_prefix("error: ") {
            if let Ok(s) = parsed {
                mismatches.push(format!(
                    "{expr}: robfig refuses it ({reason}); we read {s:?}"
                ));
            }
            continue;
        }
        let schedule = match parsed {
            Ok(s) => s,
            Err(e) => {
                mismatches.push(format!("{expr}: robfig reads it; we refuse: {e}"));
                continue;
            }
        };
        let want: Vec<&str> = expected.split(' ').collect();
        let mut t = at(start);
        for w in want {
            let next = schedule.next_after(t);
            let ok = match (w, next) {
                ("never", None) => true,
                (w, Some(n)) if w != "never" => at(w) == n,
                _ => false,
            };
            if !ok {
                mismatches.push(format!(
                    "{expr} after {t}: robfig {w}, we {:?}",
                    next.map(|n| n.with_timezone(&schedule.time_zone()).to_rfc3339())
                ));
                break;
            }
            match next {
                Some(n) => t = n,
                None => break,
            }
        }
    }
    assert!(checked > 1000, "only {checked} cases");
    assert!(
        mismatches.is_empty(),
        "{} of {checked} cases differ from robfig/cron:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
