//! Tables for people, JSON for scripts.

use serde::Serialize;
use spoke_proto::common::v1::ObjectType;

use crate::cli::OutputFormat;

/// Prints `rows` as an aligned table (with `headers`) or as a JSON array of `json` values.
pub fn table<T: Serialize>(
    format: OutputFormat,
    headers: &[&str],
    rows: &[Vec<String>],
    json: &T,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(json)?),
        OutputFormat::Table => {
            let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
            for row in rows {
                for (i, cell) in row.iter().enumerate() {
                    if i < widths.len() {
                        widths[i] = widths[i].max(cell.chars().count());
                    }
                }
            }
            let line = |cells: Vec<&str>| {
                cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            };
            println!("{}", line(headers.to_vec()));
            for row in rows {
                println!("{}", line(row.iter().map(String::as_str).collect()));
            }
        }
    }
    Ok(())
}

/// Prints key/value pairs (table) or the JSON value.
pub fn record<T: Serialize>(
    format: OutputFormat,
    pairs: &[(&str, String)],
    json: &T,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(json)?),
        OutputFormat::Table => {
            let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (k, v) in pairs {
                println!("{k:<w$}  {v}");
            }
        }
    }
    Ok(())
}

/// A timestamp as `YYYY-MM-DD HH:MM UTC`; `-` when unset.
pub fn timestamp(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

/// An object type as people write it (`companies`, `contacts`, `deals`).
pub fn object_name(o: i32) -> String {
    ObjectType::try_from(o)
        .map(|t| {
            t.as_str_name()
                .trim_start_matches("OBJECT_TYPE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| o.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_render_in_utc_and_objects_in_lower_case() {
        for (secs, want) in [
            (0, "1970-01-01 00:00 UTC"),
            (1_709_251_200, "2024-03-01 00:00 UTC"),
            (1_735_689_599, "2024-12-31 23:59 UTC"),
        ] {
            let t = Some(prost_types::Timestamp {
                seconds: secs,
                nanos: 0,
            });
            assert_eq!(timestamp(&t), want);
        }
        assert_eq!(timestamp(&None), "-");
        assert_eq!(object_name(ObjectType::Companies as i32), "companies");
        assert_eq!(object_name(99), "99");
    }
}
