//! The emulator's own clock (wall clock at start + tokio time since start + a settable offset) and the UTC date
//! formats the signing schemes use (RFC 1123, `YYYYMMDDTHHMMSSZ`, ISO 8601 with microseconds).
//!
//! Driving the clock from tokio time means tests under paused time can move it with `tokio::time::advance`,
//! and the offset lets a test put the emulator ahead of or behind the client without sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall clock at start, plus tokio time elapsed since start, plus an offset in milliseconds.
#[derive(Debug)]
pub(crate) struct Clock {
    wall0: SystemTime,
    t0: tokio::time::Instant,
    offset_ms: AtomicI64,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            wall0: SystemTime::now(),
            t0: tokio::time::Instant::now(),
            offset_ms: AtomicI64::new(0),
        }
    }

    /// Sets the offset added to the clock (positive: the emulator runs ahead of the real clock).
    pub(crate) fn set_offset_secs(&self, secs: i64) {
        self.offset_ms
            .store(secs.saturating_mul(1000), Ordering::Relaxed);
    }

    /// The emulator's current time.
    pub(crate) fn now(&self) -> SystemTime {
        let base = self.wall0 + self.t0.elapsed();
        let offset = self.offset_ms.load(Ordering::Relaxed);
        let magnitude = Duration::from_millis(offset.unsigned_abs());
        if offset >= 0 {
            base.checked_add(magnitude).unwrap_or(base)
        } else {
            base.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
        }
    }

    /// The emulator's current time in Unix milliseconds.
    pub(crate) fn now_unix_ms(&self) -> i64 {
        unix_ms(self.now())
    }
}

/// Unix milliseconds of a time (negative before 1970).
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Unix seconds of a UTC date and time, if every field is in range.
fn unix_of(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    let ok = (1..=12).contains(&mo)
        && (1..=days_in_month(y, mo)).contains(&d)
        && h < 24
        && mi < 60
        && s < 60;
    ok.then(|| days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s))
}

/// Splits Unix seconds into (year, month, day, hour, minute, second, weekday index into `WEEKDAYS`).
fn fields(unix: i64) -> (i64, u32, u32, u32, u32, u32, usize) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let weekday = days.rem_euclid(7) as usize;
    (y, m, d, secs / 3600, secs / 60 % 60, secs % 60, weekday)
}

fn num(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `Tue, 14 Nov 2023 22:13:20 GMT` (RFC 1123, English names, two-digit day).
#[cfg(test)]
pub(crate) fn format_rfc1123(unix: i64) -> String {
    let (y, m, d, h, mi, s, wd) = fields(unix);
    format!(
        "{}, {d:02} {} {y:04} {h:02}:{mi:02}:{s:02} GMT",
        WEEKDAYS[wd],
        MONTHS[(m - 1) as usize]
    )
}

/// Parses exactly the form [`format_rfc1123`] writes; the weekday must be the right one.
pub(crate) fn parse_rfc1123(s: &str) -> Option<i64> {
    let (wd, rest) = s.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    if day.len() != 2 || year.len() != 4 || time.len() != 8 {
        return None;
    }
    let mo = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let mut hms = time.split(':');
    let (h, mi, sec) = (hms.next()?, hms.next()?, hms.next()?);
    if [h, mi, sec].iter().any(|p| p.len() != 2) || hms.next().is_some() {
        return None;
    }
    let unix = unix_of(
        i64::from(num(year)?),
        mo,
        num(day)?,
        num(h)?,
        num(mi)?,
        num(sec)?,
    )?;
    (WEEKDAYS[fields(unix).6] == wd).then_some(unix)
}

/// Parses `YYYYMMDDTHHMMSSZ` (Huawei `X-Sdk-Date`).
pub(crate) fn parse_compact(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(num);
    unix_of(
        i64::from(n(0..4)?),
        n(4..6)?,
        n(6..8)?,
        n(9..11)?,
        n(11..13)?,
        n(13..15)?,
    )
}

/// `YYYYMMDDTHHMMSSZ`.
#[cfg(test)]
pub(crate) fn format_compact(unix: i64) -> String {
    let (y, m, d, h, mi, s, _) = fields(unix);
    format!("{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `2024-01-01T00:00:00.000000Z` (ISO 8601, microseconds, as Huawei IAM writes `expires_at`).
pub(crate) fn format_iso_micros(unix_ms: i64) -> String {
    let (y, m, d, h, mi, s, _) = fields(unix_ms.div_euclid(1000));
    let micros = unix_ms.rem_euclid(1000) * 1000;
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micros:06}Z")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rfc1123_round_trips_and_checks_the_weekday() {
        assert_eq!(
            format_rfc1123(1_700_000_000),
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
        assert_eq!(
            format_rfc1123(1_609_459_200),
            "Fri, 01 Jan 2021 00:00:00 GMT"
        );
        assert_eq!(
            parse_rfc1123("Sun, 31 Dec 2023 23:59:59 GMT"),
            Some(1_704_067_199)
        );
        assert_eq!(parse_rfc1123("Mon, 31 Dec 2023 23:59:59 GMT"), None);
        assert_eq!(parse_rfc1123("Sun, 31 Dec 2023 23:59:59 UTC"), None);
        assert_eq!(parse_rfc1123("Sun, 1 Dec 2023 23:59:59 GMT"), None);
        assert_eq!(parse_rfc1123("Thu, 30 Feb 2023 00:00:00 GMT"), None);
        for t in [0, 951_782_400, 1_718_000_000, 4_102_444_799] {
            assert_eq!(parse_rfc1123(&format_rfc1123(t)), Some(t));
        }
    }

    #[test]
    fn compact_and_iso_forms() {
        assert_eq!(parse_compact("20240101T000000Z"), Some(1_704_067_200));
        assert_eq!(format_compact(1_704_067_200), "20240101T000000Z");
        assert_eq!(parse_compact("20240101T000000"), None);
        assert_eq!(parse_compact("20241301T000000Z"), None);
        assert_eq!(
            format_iso_micros(1_704_067_200_123),
            "2024-01-01T00:00:00.123000Z"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn clock_follows_tokio_time_and_the_offset() {
        let c = Clock::new();
        let t = c.now_unix_ms();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(c.now_unix_ms() - t, 10_000);
        c.set_offset_secs(-100);
        assert_eq!(c.now_unix_ms() - t, -90_000);
    }
}
