//! Time helpers: milliseconds since the epoch and HubSpot's timestamp format.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// HubSpot's ISO-8601 format with milliseconds and `Z`, e.g. `2024-05-01T10:00:00.000Z`.
///
/// Written field by field: every rendered record carries four of these, and chrono's `strftime`
/// parsing was the largest single cost of serving list pages.
pub fn iso(ms: i64) -> String {
    let dt: DateTime<Utc> = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.timestamp_subsec_millis()
    )
}

/// Reads a date value as HubSpot accepts it (epoch millis or ISO date/datetime) as epoch millis.
pub fn parse_ms(value: &str) -> Option<i64> {
    if let Ok(n) = value.parse::<i64>() {
        return Some(n);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(value) {
        return Some(dt.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_dates() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso(1_714_557_600_007), "2024-05-01T10:00:00.007Z");
        assert_eq!(iso(-1), "1969-12-31T23:59:59.999Z");
        let cases = [
            ("1700000000123", Some(1_700_000_000_123)),
            ("2023-11-14T22:13:20.123Z", Some(1_700_000_000_123)),
            ("1970-01-02", Some(86_400_000)),
            ("yesterday", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_ms(input), want, "{input}");
        }
    }
}
