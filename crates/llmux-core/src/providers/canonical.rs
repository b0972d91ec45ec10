//! Encoding helpers the request signers share: RFC 3986 and form percent-encoding, percent
//! decoding, and UTC calendar timestamps (no date-time crate needed).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

/// RFC 3986 "unreserved" encoding: keeps `A-Z a-z 0-9 - _ . ~`, encodes every other byte of
/// the UTF-8 form as upper-case `%XX` (space is `%20`, `/` is `%2F`).
pub fn rfc3986_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            push_escaped(&mut out, b);
        }
    }
    out
}

/// `application/x-www-form-urlencoded` as Python's `urlencode` writes it: like
/// [`rfc3986_encode`] but a space becomes `+`.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            push_escaped(&mut out, b);
        }
    }
    out
}

/// Decodes `%XX` escapes (invalid escapes are kept as written); `+` is left alone.
pub fn percent_decode(s: &str) -> String {
    fn val(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (val(bytes[i + 1]), val(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A UTC calendar time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    /// Year.
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
}

impl UtcTime {
    /// The UTC calendar time of `t` (times before 1970 read as 1970-01-01).
    pub fn from_system(t: SystemTime) -> Self {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        UtcTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// `YYYYMMDDTHHMMSSZ` (Huawei `X-Sdk-Date`).
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` (ISO 8601, Alibaba `x-acs-date`).
    pub fn iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Parses an ISO 8601 UTC timestamp such as `2024-01-02T03:04:05Z` or
/// `2024-01-02T03:04:05.123000Z` (fractions are dropped; `+00:00` is accepted for `Z`).
pub fn parse_iso8601_utc(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let body = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .or_else(|| s.strip_suffix("+0000"))?;
    let (date, time) = body.split_once('T').or_else(|| body.split_once(' '))?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    if d.next().is_some() {
        return None;
    }
    let time = time.split('.').next()?;
    let mut t = time.split(':');
    let hour: u64 = t.next()?.parse().ok()?;
    let minute: u64 = t.next()?.parse().ok()?;
    let second: u64 = t.next()?.parse().ok()?;
    // Four-digit years only: a year from a hostile answer must not overflow the day count.
    if !(0..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
    {
        return None;
    }
    if second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days).ok()? * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoders_follow_rfc3986_and_form_rules() {
        assert_eq!(rfc3986_encode("a b*c~d/é"), "a%20b%2Ac~d%2F%C3%A9");
        assert_eq!(
            form_encode("Tue, 14 Nov 2023 22:13:20 GMT"),
            "Tue%2C+14+Nov+2023+22%3A13%3A20+GMT"
        );
        assert_eq!(percent_decode("%E6%B5%8B%20x%zz%4"), "测 x%zz%4");
    }

    #[test]
    fn utc_times_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_704_067_199);
        let u = UtcTime::from_system(t);
        assert_eq!(u.compact(), "20231231T235959Z");
        assert_eq!(u.iso8601(), "2023-12-31T23:59:59Z");
        assert_eq!(parse_iso8601_utc("2023-12-31T23:59:59.123456Z"), Some(t));
        assert_eq!(parse_iso8601_utc("2023-12-31T23:59:59+00:00"), Some(t));
        assert_eq!(
            UtcTime::from_system(UNIX_EPOCH + Duration::from_secs(951_782_400)).iso8601(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(parse_iso8601_utc("2023-13-01T00:00:00Z"), None);
        assert_eq!(parse_iso8601_utc("garbage"), None);
        // A year past four digits is refused, not overflowed.
        assert_eq!(
            parse_iso8601_utc("9223372036854775807-01-01T00:00:00Z"),
            None
        );
    }
}
