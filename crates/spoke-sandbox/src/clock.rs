//! Time helpers: milliseconds since the epoch and HubSpot's timestamp format.

use chrono::{DateTime, TimeZone, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// HubSpot's ISO-8601 format with milliseconds and `Z`, e.g. `2024-05-01T10:00:00.000Z`.
pub fn iso(ms: i64) -> String {
    let dt: DateTime<Utc> = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
    dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
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
