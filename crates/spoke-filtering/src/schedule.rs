//! Schedule math: when the next scheduled run of an org starts.
//!
//! Scheduled runs start inside the off-hours window 8 PM–6 AM America/New_York that begins on the
//! scheduled day (weekly: that weekday; monthly: that day of the month, or the month's last day
//! when it is shorter). Each org gets a fixed slot inside the window, derived from a stable hash of
//! its id, so thousands of orgs do not all start at 8 PM. Local wall-clock times are converted with
//! chrono-tz: a slot that falls into the spring-forward gap moves one hour later (still inside the
//! window, which ends at 6 AM), and a slot in the repeated fall-back hour takes its first occurrence.

use chrono::{
    DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use chrono_tz::America::New_York;
use chrono_tz::Tz;

/// The time zone of the off-hours window.
pub const TIME_ZONE: Tz = New_York;
/// The name of [`TIME_ZONE`] as APIs report it.
pub const TIME_ZONE_NAME: &str = "America/New_York";
/// Local hour the window opens.
const WINDOW_START_HOUR: u32 = 20;
/// Length of the window in minutes (8 PM to 6 AM).
pub const WINDOW_MINUTES: u32 = 10 * 60;

/// How often scheduled runs happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    /// Every week on this weekday.
    Weekly(chrono::Weekday),
    /// Every month on this day (1..=31; the month's last day when shorter).
    Monthly(u32),
}

/// The minute inside the window (0..600) where `org`'s runs start: FNV-1a of the org id, so it is
/// the same on every replica and across releases.
pub fn slot_offset_minutes(org: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in org.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // The last 30 minutes stay free so a run started at its slot is well inside the window.
    u32::try_from(hash % u64::from(WINDOW_MINUTES - 30)).unwrap_or(0)
}

/// The instant of the slot in the window that opens on local date `day`.
pub fn slot_on(day: NaiveDate, offset_minutes: u32) -> DateTime<Utc> {
    let opens = NaiveDateTime::new(
        day,
        NaiveTime::from_hms_opt(WINDOW_START_HOUR, 0, 0).unwrap_or_default(),
    );
    let local =
        opens + chrono::Duration::minutes(i64::from(offset_minutes.min(WINDOW_MINUTES - 1)));
    resolve_local(local)
}

/// Local wall-clock time → instant, DST-aware (gap: one hour later; overlap: the earlier one).
fn resolve_local(local: NaiveDateTime) -> DateTime<Utc> {
    match TIME_ZONE.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        chrono::LocalResult::None => {
            let later = local + chrono::Duration::hours(1);
            match TIME_ZONE.from_local_datetime(&later) {
                chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
                    t.with_timezone(&Utc)
                }
                // No zone skips two hours in a row; UTC is a safe reading of the wall clock.
                chrono::LocalResult::None => Utc.from_utc_datetime(&later),
            }
        }
    }
}

/// The first slot strictly after `after` for `frequency`, with the org's slot offset.
pub fn next_run(frequency: Frequency, offset_minutes: u32, after: DateTime<Utc>) -> DateTime<Utc> {
    let today = after.with_timezone(&TIME_ZONE).date_naive();
    // The window that opened yesterday may still hold a later slot (e.g. 1 AM), so start there.
    let start = today - Days::new(1);
    match frequency {
        Frequency::Weekly(weekday) => {
            for i in 0..15 {
                let day = start + Days::new(i);
                if day.weekday() == weekday {
                    let slot = slot_on(day, offset_minutes);
                    if slot > after {
                        return slot;
                    }
                }
            }
        }
        Frequency::Monthly(dom) => {
            let first_of_month = start.with_day(1).unwrap_or(start);
            for m in 0..4 {
                let Some(month) = first_of_month.checked_add_months(Months::new(m)) else {
                    continue;
                };
                let day = clamp_day(month, dom);
                if day < start {
                    continue;
                }
                let slot = slot_on(day, offset_minutes);
                if slot > after {
                    return slot;
                }
            }
        }
    }
    // Unreachable for valid input (a weekday recurs within 8 days, a month day within 2 months);
    // a week later is a harmless answer rather than a panic.
    after + chrono::Duration::days(7)
}

/// Day `dom` of the month of `first`, or its last day when the month is shorter.
fn clamp_day(first: NaiveDate, dom: u32) -> NaiveDate {
    let mut d = dom.clamp(1, 31);
    loop {
        if let Some(day) = first.with_day(d) {
            return day;
        }
        d -= 1;
    }
}

/// True when `t` lies inside an off-hours window (8 PM–6 AM America/New_York).
pub fn in_window(t: DateTime<Utc>) -> bool {
    let local = t.with_timezone(&TIME_ZONE).time();
    let start = NaiveTime::from_hms_opt(WINDOW_START_HOUR, 0, 0).unwrap_or_default();
    let end = NaiveTime::from_hms_opt(6, 0, 0).unwrap_or_default();
    local >= start || local < end
}

/// Today's weekday and day of month in the window's time zone (defaults of SaveSchedule).
pub fn today_local(now: DateTime<Utc>) -> (chrono::Weekday, u32) {
    let local = now.with_timezone(&TIME_ZONE);
    (local.weekday(), local.day())
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("bad test timestamp {s}: {e}"))
    }

    #[test]
    fn slots_resolve_across_dst_transitions() {
        // (window opening local date, offset minutes, expected UTC instant)
        let cases = [
            // Winter (EST, UTC-5): 20:00 local is 01:00 UTC the next day.
            ("2025-01-15", 0, "2025-01-16T01:00:00Z"),
            // Summer (EDT, UTC-4): 20:00 local is 00:00 UTC.
            ("2025-07-15", 0, "2025-07-16T00:00:00Z"),
            // Spring forward, 2025-03-09 02:00 EST → 03:00 EDT. Window opens Sat 03-08 20:00 EST.
            ("2025-03-08", 0, "2025-03-09T01:00:00Z"),
            // 01:30 EST still exists.
            ("2025-03-08", 330, "2025-03-09T06:30:00Z"),
            // 02:30 does not exist: moved to 03:30 EDT = 07:30 UTC.
            ("2025-03-08", 390, "2025-03-09T07:30:00Z"),
            // 03:30 EDT exists normally and equals the moved slot.
            ("2025-03-08", 450, "2025-03-09T07:30:00Z"),
            // 05:59 EDT is the last minute of the window.
            ("2025-03-08", 599, "2025-03-09T09:59:00Z"),
            // Fall back, 2025-11-02 02:00 EDT → 01:00 EST. Window opens Sat 11-01 20:00 EDT.
            ("2025-11-01", 0, "2025-11-02T00:00:00Z"),
            // 01:30 happens twice: the first (EDT) is taken.
            ("2025-11-01", 330, "2025-11-02T05:30:00Z"),
            // 02:30 EST (after the repeat) is 07:30 UTC.
            ("2025-11-01", 390, "2025-11-02T07:30:00Z"),
            // The window crossing into a new year.
            ("2024-12-31", 300, "2025-01-01T06:00:00Z"),
        ];
        for (day, offset, want) in cases {
            let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").expect("test date");
            let got = slot_on(day, offset);
            assert_eq!(got, utc(want), "window of {day} + {offset} min");
            assert!(in_window(got), "{got} must be inside the window");
        }
    }

    #[test]
    fn weekly_next_run_is_the_next_slot_on_the_weekday() {
        // (frequency, offset, after, expected)
        let cases = [
            // Friday 2024-03-22 noon EDT, weekly Friday, slot 20:00 → same evening.
            (
                Frequency::Weekly(Weekday::Fri),
                0,
                "2024-03-22T16:00:00Z",
                "2024-03-23T00:00:00Z",
            ),
            // Right at the slot: strictly after → next week.
            (
                Frequency::Weekly(Weekday::Fri),
                0,
                "2024-03-23T00:00:00Z",
                "2024-03-30T00:00:00Z",
            ),
            // Saturday 00:30 local, Friday window with a 02:00 slot still ahead → tonight's slot.
            (
                Frequency::Weekly(Weekday::Fri),
                360,
                "2024-03-23T04:30:00Z",
                "2024-03-23T06:00:00Z",
            ),
            // Weekly Saturday across spring forward 2025 (Sat 03-08 window, slot 02:30 local).
            (
                Frequency::Weekly(Weekday::Sat),
                390,
                "2025-03-05T12:00:00Z",
                "2025-03-09T07:30:00Z",
            ),
            // Weekly Saturday across fall back 2025 (Sat 11-01 window, slot 01:30, first one).
            (
                Frequency::Weekly(Weekday::Sat),
                330,
                "2025-10-30T12:00:00Z",
                "2025-11-02T05:30:00Z",
            ),
            // The week after fall back is plain EST.
            (
                Frequency::Weekly(Weekday::Sat),
                330,
                "2025-11-02T05:30:00Z",
                "2025-11-09T06:30:00Z",
            ),
        ];
        for (freq, offset, after, want) in cases {
            let got = next_run(freq, offset, utc(after));
            assert_eq!(got, utc(want), "{freq:?} offset {offset} after {after}");
        }
    }

    #[test]
    fn monthly_next_run_clamps_to_short_months() {
        let cases = [
            // Day 15, before it: this month.
            (
                Frequency::Monthly(15),
                0,
                "2025-01-10T12:00:00Z",
                "2025-01-16T01:00:00Z",
            ),
            // Day 15, after it: next month.
            (
                Frequency::Monthly(15),
                0,
                "2025-01-16T02:00:00Z",
                "2025-02-16T01:00:00Z",
            ),
            // Day 31 in February: the 28th.
            (
                Frequency::Monthly(31),
                0,
                "2025-02-01T12:00:00Z",
                "2025-03-01T01:00:00Z",
            ),
            // Day 31 in a leap February: the 29th.
            (
                Frequency::Monthly(31),
                0,
                "2024-02-01T12:00:00Z",
                "2024-03-01T01:00:00Z",
            ),
            // Day 30 in April, summer time.
            (
                Frequency::Monthly(30),
                60,
                "2025-04-02T12:00:00Z",
                "2025-05-01T01:00:00Z",
            ),
            // Day 8 in March 2025: the window contains the spring-forward gap.
            (
                Frequency::Monthly(8),
                390,
                "2025-03-01T12:00:00Z",
                "2025-03-09T07:30:00Z",
            ),
            // Day 1 of November 2025: the window contains the repeated hour.
            (
                Frequency::Monthly(1),
                330,
                "2025-10-15T12:00:00Z",
                "2025-11-02T05:30:00Z",
            ),
            // December → January.
            (
                Frequency::Monthly(20),
                0,
                "2025-12-21T12:00:00Z",
                "2026-01-21T01:00:00Z",
            ),
        ];
        for (freq, offset, after, want) in cases {
            let got = next_run(freq, offset, utc(after));
            assert_eq!(got, utc(want), "{freq:?} offset {offset} after {after}");
        }
    }

    #[test]
    fn org_offsets_are_stable_spread_and_inside_the_window() {
        let offsets: Vec<u32> = (0..1000)
            .map(|i| slot_offset_minutes(&format!("org-{i}")))
            .collect();
        assert!(offsets.iter().all(|o| *o < WINDOW_MINUTES - 30));
        assert_eq!(slot_offset_minutes("org-1"), slot_offset_minutes("org-1"));
        let distinct: std::collections::HashSet<_> = offsets.iter().collect();
        assert!(
            distinct.len() > 400,
            "only {} distinct slots",
            distinct.len()
        );
        let first_hour = offsets.iter().filter(|o| **o < 60).count();
        assert!(
            first_hour < 200,
            "{first_hour} of 1000 orgs in the first hour"
        );
    }

    #[test]
    fn window_membership() {
        let cases = [
            ("2025-01-16T00:59:00Z", false), // 19:59 EST
            ("2025-01-16T01:00:00Z", true),  // 20:00 EST
            ("2025-01-16T10:59:00Z", true),  // 05:59 EST
            ("2025-01-16T11:00:00Z", false), // 06:00 EST
            ("2025-07-16T00:00:00Z", true),  // 20:00 EDT
            ("2025-07-15T23:59:00Z", false), // 19:59 EDT
        ];
        for (t, want) in cases {
            assert_eq!(in_window(utc(t)), want, "{t}");
        }
    }
}
