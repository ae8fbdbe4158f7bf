//! Event time as text: parsing producer timestamps and writing dates and timestamps.

use auditsync_core::ValidationError;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

use crate::fields;

fn utc(ms: i64) -> DateTime<Utc> {
    // Event times are checked to lie in 1970..9999 when parsed, so this cannot fail for a
    // stored event; the epoch stands in for anything else.
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS.mmm`, UTC, no zone.
pub(crate) fn timestamp(ms: i64) -> String {
    utc(ms).format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// `YYYY-MM-DD`.
pub(crate) fn date(ms: i64) -> String {
    utc(ms).format("%Y-%m-%d").to_string()
}

/// The first day of the month, `YYYY-MM-01`.
pub(crate) fn month_start(ms: i64) -> String {
    utc(ms).format("%Y-%m-01").to_string()
}

/// The year.
pub(crate) fn year(ms: i64) -> i64 {
    i64::from(utc(ms).year())
}

/// A timestamp from a producer: epoch milliseconds, RFC 3339 (`2024-03-01T12:00:00.5Z`,
/// any offset), or a zone-less `YYYY-MM-DD[ T]HH:MM:SS[.fff]` taken as UTC. Sub-millisecond
/// digits are refused rather than dropped.
pub(crate) fn parse_timestamp(name: &str, value: Value) -> Result<i64, ValidationError> {
    let text = match value {
        Value::String(text) => text,
        number @ Value::Number(_) => return fields::epoch_millis(name, number),
        other => {
            return Err(ValidationError::new(
                name,
                format!(
                    "expected an RFC 3339 timestamp or epoch milliseconds, got {}",
                    fields::kind(&other)
                ),
            ))
        }
    };
    let parsed = DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f"))
                .map(|t| t.and_utc())
        })
        .map_err(|_| {
            ValidationError::new(
                name,
                format!("{text:?} is not an RFC 3339 timestamp or `YYYY-MM-DD HH:MM:SS[.fff]`"),
            )
        })?;
    if parsed.timestamp_subsec_nanos() % 1_000_000 != 0 {
        return Err(ValidationError::new(
            name,
            format!("{text:?} is more precise than milliseconds"),
        ));
    }
    fields::epoch_millis(name, Value::from(parsed.timestamp_millis()))
}

/// A `YYYY-MM-DD` date, returned in that form.
pub(crate) fn parse_date(name: &str, value: Value) -> Result<String, ValidationError> {
    let text = fields::string(name, value)?;
    let date = NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map_err(|_| ValidationError::new(name, format!("{text:?} is not a YYYY-MM-DD date")))?;
    Ok(date.format("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_parse_in_every_accepted_form_and_print_back() {
        let ms = 1_690_610_557_857;
        for input in [
            json!(ms),
            json!("2023-07-29T06:02:37.857Z"),
            json!("2023-07-29T08:02:37.857+02:00"),
            json!("2023-07-29 06:02:37.857"),
            json!("2023-07-29T06:02:37.857"),
        ] {
            assert_eq!(parse_timestamp("t", input.clone()).unwrap(), ms, "{input}");
        }
        assert_eq!(timestamp(ms), "2023-07-29 06:02:37.857");
        assert_eq!(date(ms), "2023-07-29");
        assert_eq!(month_start(ms), "2023-07-01");
        assert_eq!(year(ms), 2023);
        for bad in [
            json!("yesterday"),
            json!("2023-07-29T06:02:37.8571Z"),
            json!(true),
            json!(-1),
        ] {
            let err = parse_timestamp("t", bad.clone()).unwrap_err();
            assert_eq!(err.field, "t", "{bad}");
        }
        assert_eq!(parse_date("d", json!("2023-07-01")).unwrap(), "2023-07-01");
        assert!(parse_date("d", json!("2023-7-1x")).is_err());
    }
}
