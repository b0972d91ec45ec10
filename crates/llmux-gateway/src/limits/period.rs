//! Budget periods: a budget counts the spend of its current period (`daily`, `weekly`,
//! `monthly`, in the time zone `server.budget_timezone`) or of the whole life of its key or
//! team (`none`).
//!
//! A period is named by a label ([`BudgetCalendar::label`]): `d:2026-12-07` (a local day),
//! `w:2026-11-30` (the ISO week that starts on that local Monday), `m:2026-12` (a local month),
//! `""` for `none`. Labels are what counters are keyed by, in the store and in Redis, so a
//! boundary resets a budget without anyone sweeping old counters: the next period has a new
//! label, whose counter starts at zero. Within one kind, labels sort in time order.
//!
//! A label is the local date of an instant, which is always defined: across a DST change a
//! local day is 23 or 25 hours long, and a day whose midnight does not exist starts at its
//! first instant. The current time comes from a [`Clock`], so tests move it instead of
//! sleeping.

use std::sync::atomic::{AtomicI64, Ordering};

use jiff::tz::TimeZone;
use jiff::{civil::Date, Timestamp, ToSpan};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How often a budget starts again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// Never: the budget covers the whole life of the key or team.
    #[default]
    None,
    /// Each local day (from midnight in `server.budget_timezone`).
    Daily,
    /// Each ISO week, from local Monday midnight.
    Weekly,
    /// Each calendar month, from the local midnight of its first day.
    Monthly,
}

impl BudgetPeriod {
    /// Every period, in the order the docs list them.
    pub const ALL: [BudgetPeriod; 4] = [
        BudgetPeriod::None,
        BudgetPeriod::Daily,
        BudgetPeriod::Weekly,
        BudgetPeriod::Monthly,
    ];

    /// The name as stored and as the API and CLI take it.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::None => "none",
            BudgetPeriod::Daily => "daily",
            BudgetPeriod::Weekly => "weekly",
            BudgetPeriod::Monthly => "monthly",
        }
    }

    /// Parses a stored or typed name; unknown names read as `None` here only through
    /// [`BudgetPeriod::from_stored`].
    pub fn parse(s: &str) -> Result<BudgetPeriod, String> {
        BudgetPeriod::ALL
            .into_iter()
            .find(|p| p.as_str() == s.trim())
            .ok_or_else(|| {
                let shown: String = s.chars().take(32).collect();
                format!("unknown budget period `{shown}`: expected none, daily, weekly or monthly")
            })
    }

    /// A stored value (the database only ever holds the four names; anything else, from a
    /// hand-edited row, counts as `none`).
    pub fn from_stored(s: &str) -> BudgetPeriod {
        BudgetPeriod::parse(s).unwrap_or_default()
    }
}

impl std::fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BudgetPeriod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BudgetPeriod::parse(s)
    }
}

/// The labels of one instant for every periodic kind (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeriodLabels {
    /// `d:YYYY-MM-DD`.
    pub daily: String,
    /// `w:YYYY-MM-DD` of the week's Monday.
    pub weekly: String,
    /// `m:YYYY-MM`.
    pub monthly: String,
}

/// The time zone budget periods are computed in. Cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetCalendar {
    tz: TimeZone,
    name: String,
}

impl Default for BudgetCalendar {
    fn default() -> Self {
        BudgetCalendar::utc()
    }
}

/// The longest time zone name accepted.
const MAX_TZ_NAME: usize = 64;

impl BudgetCalendar {
    /// Periods in UTC (the default).
    pub fn utc() -> Self {
        BudgetCalendar {
            tz: TimeZone::UTC,
            name: "UTC".to_owned(),
        }
    }

    /// Periods in the IANA time zone `name` (`Europe/Berlin`), from the zone database built
    /// into the binary.
    pub fn new(name: &str) -> Result<Self, String> {
        let name = name.trim();
        let shown: String = name.chars().take(MAX_TZ_NAME).collect();
        if name.is_empty() || name.len() > MAX_TZ_NAME {
            return Err(format!(
                "`{shown}` is not an IANA time zone name (such as UTC or Europe/Berlin)"
            ));
        }
        let tz = TimeZone::get(name).map_err(|_| {
            format!(
                "unknown time zone `{shown}`: expected an IANA name such as UTC or Europe/Berlin"
            )
        })?;
        Ok(BudgetCalendar {
            tz,
            name: name.to_owned(),
        })
    }

    /// The zone's name as configured.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn date(&self, at_ms: i64) -> Date {
        let ts = Timestamp::from_millisecond(at_ms).unwrap_or(if at_ms < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        });
        ts.to_zoned_datetime(self.tz.clone()).date()
    }

    /// The label of the period of kind `period` that contains `at_ms` (unix milliseconds);
    /// `""` for [`BudgetPeriod::None`].
    pub fn label(&self, period: BudgetPeriod, at_ms: i64) -> String {
        if period == BudgetPeriod::None {
            return String::new();
        }
        let d = self.date(at_ms);
        match period {
            BudgetPeriod::None => String::new(),
            BudgetPeriod::Daily => format!("d:{d}"),
            BudgetPeriod::Weekly => format!("w:{}", monday(d)),
            BudgetPeriod::Monthly => format!("m:{:04}-{:02}", d.year(), d.month()),
        }
    }

    /// The labels of `at_ms` for the three periodic kinds at once (one zone conversion).
    pub fn labels(&self, at_ms: i64) -> PeriodLabels {
        let d = self.date(at_ms);
        PeriodLabels {
            daily: format!("d:{d}"),
            weekly: format!("w:{}", monday(d)),
            monthly: format!("m:{:04}-{:02}", d.year(), d.month()),
        }
    }

    /// Start and end (unix milliseconds, end exclusive) of the period of kind `period` that
    /// contains `at_ms`; `None` for [`BudgetPeriod::None`] or outside the supported range.
    pub fn bounds(&self, period: BudgetPeriod, at_ms: i64) -> Option<(i64, i64)> {
        let d = self.date(at_ms);
        let (first, next) = match period {
            BudgetPeriod::None => return None,
            BudgetPeriod::Daily => (d, d.tomorrow().ok()?),
            BudgetPeriod::Weekly => {
                let m = monday(d);
                (m, m.checked_add(7.days()).ok()?)
            }
            BudgetPeriod::Monthly => {
                let f = d.first_of_month();
                (f, f.checked_add(1.month()).ok()?)
            }
        };
        Some((self.start_of(first)?, self.start_of(next)?))
    }

    /// The first instant of a local date (its midnight, or the first instant after a gap).
    fn start_of(&self, d: Date) -> Option<i64> {
        let z = d.to_zoned_datetime(self.tz.clone()).ok()?;
        let start = z.start_of_day().ok()?;
        Some(start.timestamp().as_millisecond())
    }
}

/// A budget as it stands at one instant: its current period, the spend counted against it and
/// when it starts again. The admin API answers it beside each key and team, so no client has
/// to redo the period arithmetic.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BudgetNow {
    /// The current period's label (`m:2026-12`, see the module docs); empty for `none`.
    pub period: String,
    /// Tokens (input + output) counted against the budget now: those of the current period, or
    /// of the whole life of the key or team for `none`.
    pub spent_tokens: u64,
    /// Cost counted against the budget now, likewise.
    pub spent_cost: f64,
    /// When the current period began, unix milliseconds; `null` for `none`.
    pub period_start_ms: Option<i64>,
    /// When the budget starts again (the first instant of the next period), unix
    /// milliseconds; `null` for `none`, which never resets.
    pub resets_at_ms: Option<i64>,
    /// The time zone periods follow (`server.budget_timezone`).
    pub timezone: String,
}

impl BudgetCalendar {
    /// The budget of kind `period` at `now_ms`; `spend` gives the spend counted in the period
    /// with the label it is handed (see [`crate::store::budget_spend`]).
    pub fn budget_now(
        &self,
        period: BudgetPeriod,
        now_ms: i64,
        spend: impl FnOnce(&str) -> (u64, f64),
    ) -> BudgetNow {
        let label = self.label(period, now_ms);
        let (spent_tokens, spent_cost) = spend(&label);
        let bounds = self.bounds(period, now_ms);
        BudgetNow {
            period: label,
            spent_tokens,
            spent_cost,
            period_start_ms: bounds.map(|b| b.0),
            resets_at_ms: bounds.map(|b| b.1),
            timezone: self.name.clone(),
        }
    }
}

/// Remembers the labels of the last local day asked for, so labelling a batch of records of
/// one day converts time zones once.
#[derive(Debug, Default)]
pub struct LabelCache {
    day: Option<(i64, i64, std::sync::Arc<PeriodLabels>)>,
}

impl LabelCache {
    /// The labels of `at_ms` in `calendar`.
    pub fn labels(
        &mut self,
        calendar: &BudgetCalendar,
        at_ms: i64,
    ) -> std::sync::Arc<PeriodLabels> {
        if let Some((start, end, labels)) = &self.day {
            if (*start..*end).contains(&at_ms) {
                return labels.clone();
            }
        }
        let labels = std::sync::Arc::new(calendar.labels(at_ms));
        if let Some((start, end)) = calendar.bounds(BudgetPeriod::Daily, at_ms) {
            self.day = Some((start, end, labels.clone()));
        }
        labels
    }
}

/// The Monday that starts `d`'s ISO week.
fn monday(d: Date) -> Date {
    let back = i64::from(d.weekday().to_monday_zero_offset());
    d.checked_sub(back.days()).unwrap_or(d)
}

/// Where the limits read the time (unix milliseconds) to decide a budget's period.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `at_ms`.
    pub fn new(at_ms: i64) -> Self {
        ManualClock(AtomicI64::new(at_ms))
    }

    /// Sets the time.
    pub fn set(&self, at_ms: i64) {
        self.0.store(at_ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of an RFC 3339 instant.
    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>()
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .as_millisecond()
    }

    #[test]
    fn utc_labels_of_each_kind() {
        let c = BudgetCalendar::utc();
        let t = at("2026-12-07T10:00:00Z"); // a Monday
        assert_eq!(c.label(BudgetPeriod::None, t), "");
        assert_eq!(c.label(BudgetPeriod::Daily, t), "d:2026-12-07");
        assert_eq!(c.label(BudgetPeriod::Weekly, t), "w:2026-12-07");
        assert_eq!(c.label(BudgetPeriod::Monthly, t), "m:2026-12");
        let sunday = at("2026-12-13T23:59:59.999Z");
        assert_eq!(c.label(BudgetPeriod::Weekly, sunday), "w:2026-12-07");
        assert_eq!(c.label(BudgetPeriod::Weekly, sunday + 1), "w:2026-12-14");
        let ls = c.labels(t);
        assert_eq!(
            (ls.daily.as_str(), ls.weekly.as_str(), ls.monthly.as_str()),
            ("d:2026-12-07", "w:2026-12-07", "m:2026-12")
        );
    }

    #[test]
    fn a_day_starts_at_local_midnight_in_a_non_utc_zone() {
        let c = BudgetCalendar::new("Asia/Shanghai").unwrap();
        // 16:00 UTC is midnight in Shanghai (UTC+8, no DST).
        let before = at("2026-12-06T15:59:59.999Z");
        assert_eq!(c.label(BudgetPeriod::Daily, before), "d:2026-12-06");
        assert_eq!(c.label(BudgetPeriod::Daily, before + 1), "d:2026-12-07");
        // Monday 2026-12-07 00:00 in Shanghai is Sunday 16:00 UTC: a new week there.
        assert_eq!(c.label(BudgetPeriod::Weekly, before), "w:2026-11-30");
        assert_eq!(c.label(BudgetPeriod::Weekly, before + 1), "w:2026-12-07");
        // The month turns at local midnight too.
        let eom = at("2026-11-30T15:59:59.999Z");
        assert_eq!(c.label(BudgetPeriod::Monthly, eom), "m:2026-11");
        assert_eq!(c.label(BudgetPeriod::Monthly, eom + 1), "m:2026-12");
        assert_eq!(
            c.bounds(BudgetPeriod::Daily, before + 1),
            Some((before + 1, before + 1 + 86_400_000))
        );
    }

    #[test]
    fn days_across_dst_changes_are_23_and_25_hours_long() {
        let c = BudgetCalendar::new("Europe/Berlin").unwrap();
        // 2026-03-29: clocks go 02:00 CET → 03:00 CEST.
        let spring = at("2026-03-29T12:00:00Z");
        let (s, e) = c.bounds(BudgetPeriod::Daily, spring).unwrap();
        assert_eq!(s, at("2026-03-28T23:00:00Z"));
        assert_eq!(e, at("2026-03-29T22:00:00Z"));
        assert_eq!(e - s, 23 * 3_600_000);
        assert_eq!(c.label(BudgetPeriod::Daily, e - 1), "d:2026-03-29");
        assert_eq!(c.label(BudgetPeriod::Daily, e), "d:2026-03-30");
        // 2026-10-25: clocks go 03:00 CEST → 02:00 CET.
        let autumn = at("2026-10-25T12:00:00Z");
        let (s, e) = c.bounds(BudgetPeriod::Daily, autumn).unwrap();
        assert_eq!(e - s, 25 * 3_600_000);
        assert_eq!(c.label(BudgetPeriod::Daily, e - 1), "d:2026-10-25");
        assert_eq!(c.label(BudgetPeriod::Daily, e), "d:2026-10-26");
        // The week holding the spring change is an hour short, and starts at Monday midnight.
        let (ws, we) = c.bounds(BudgetPeriod::Weekly, spring).unwrap();
        assert_eq!(ws, at("2026-03-22T23:00:00Z"));
        assert_eq!(we - ws, 7 * 86_400_000 - 3_600_000);
        assert_eq!(c.label(BudgetPeriod::Weekly, we - 1), "w:2026-03-23");
        assert_eq!(c.label(BudgetPeriod::Weekly, we), "w:2026-03-30");
    }

    #[test]
    fn a_day_whose_midnight_does_not_exist_starts_at_its_first_instant() {
        // Santiago, 2026-09-06: clocks jump from 00:00 to 01:00 (midnight never happens).
        let c = BudgetCalendar::new("America/Santiago").unwrap();
        let noon = at("2026-09-06T16:00:00Z");
        let (s, e) = c.bounds(BudgetPeriod::Daily, noon).unwrap();
        assert_eq!(c.label(BudgetPeriod::Daily, s), "d:2026-09-06");
        assert_eq!(c.label(BudgetPeriod::Daily, s - 1), "d:2026-09-05");
        assert_eq!(e - s, 23 * 3_600_000);
    }

    #[test]
    fn months_have_their_calendar_lengths() {
        let c = BudgetCalendar::new("America/New_York").unwrap();
        let (s, e) = c
            .bounds(BudgetPeriod::Monthly, at("2028-02-15T12:00:00Z"))
            .unwrap();
        assert_eq!(s, at("2028-02-01T05:00:00Z"));
        assert_eq!(e, at("2028-03-01T05:00:00Z"));
        // November holds the autumn change: 30 days and one hour.
        let (s, e) = c
            .bounds(BudgetPeriod::Monthly, at("2026-11-15T12:00:00Z"))
            .unwrap();
        assert_eq!(e - s, 30 * 86_400_000 + 3_600_000);
        assert_eq!(c.bounds(BudgetPeriod::None, s), None);
    }

    #[test]
    fn labels_of_one_kind_sort_in_time_order() {
        let c = BudgetCalendar::new("Pacific/Kiritimati").unwrap();
        let mut t = at("2026-01-01T00:00:00Z");
        for kind in [
            BudgetPeriod::Daily,
            BudgetPeriod::Weekly,
            BudgetPeriod::Monthly,
        ] {
            let mut last = c.label(kind, t);
            for _ in 0..400 {
                t += 86_400_000;
                let l = c.label(kind, t);
                assert!(l >= last, "{l} after {last}");
                last = l;
            }
        }
    }

    #[test]
    fn bad_zones_and_periods_are_refused_clearly() {
        let e = BudgetCalendar::new("Mars/Olympus").unwrap_err();
        assert!(e.contains("unknown time zone `Mars/Olympus`"), "{e}");
        let long = "x".repeat(10_000);
        let e = BudgetCalendar::new(&long).unwrap_err();
        assert!(e.len() < 200, "{e}");
        assert!(BudgetCalendar::new("").is_err());
        assert_eq!(BudgetPeriod::parse("monthly"), Ok(BudgetPeriod::Monthly));
        let e = BudgetPeriod::parse("hourly").unwrap_err();
        assert_eq!(
            e,
            "unknown budget period `hourly`: expected none, daily, weekly or monthly"
        );
        assert_eq!(BudgetPeriod::from_stored("junk"), BudgetPeriod::None);
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let c = BudgetCalendar::new("Europe/Berlin").unwrap();
        for t in [i64::MIN, i64::MAX, 0, -1] {
            let _ = c.labels(t);
            let _ = c.bounds(BudgetPeriod::Monthly, t);
        }
    }

    #[test]
    fn the_label_cache_answers_like_the_calendar() {
        let c = BudgetCalendar::new("Europe/Berlin").unwrap();
        let mut cache = LabelCache::default();
        let mut t = at("2026-03-28T20:00:00Z");
        for _ in 0..200 {
            assert_eq!(*cache.labels(&c, t), c.labels(t), "at {t}");
            t += 17 * 60_000;
        }
    }

    #[test]
    fn budget_now_counts_the_current_period_and_says_when_it_resets() {
        let c = BudgetCalendar::new("Europe/Berlin").unwrap();
        let now = at("2026-01-31T22:59:59.999Z"); // the last millisecond of January in Berlin
        let mut asked = String::new();
        let b = c.budget_now(BudgetPeriod::Monthly, now, |l| {
            asked = l.to_owned();
            (7, 0.5)
        });
        assert_eq!(asked, "m:2026-01");
        assert_eq!(b.period, "m:2026-01");
        assert_eq!((b.spent_tokens, b.spent_cost), (7, 0.5));
        assert_eq!(b.period_start_ms, Some(at("2025-12-31T23:00:00Z")));
        assert_eq!(b.resets_at_ms, Some(now + 1));
        assert_eq!(b.timezone, "Europe/Berlin");
        let b = c.budget_now(BudgetPeriod::Daily, now + 1, |_| (0, 0.0));
        assert_eq!(b.period, "d:2026-02-01");
        assert_eq!(b.resets_at_ms, Some(now + 1 + 86_400_000));
        let none = c.budget_now(BudgetPeriod::None, now, |l| {
            assert_eq!(l, "");
            (99, 1.0)
        });
        assert_eq!((none.period.as_str(), none.spent_tokens), ("", 99));
        assert_eq!((none.period_start_ms, none.resets_at_ms), (None, None));
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = ManualClock::new(5);
        assert_eq!(c.now_ms(), 5);
        c.advance(10);
        assert_eq!(c.now_ms(), 15);
        c.set(1);
        assert_eq!(c.now_ms(), 1);
    }
}
