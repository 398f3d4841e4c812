//! From an `EcsPowerSchedule` spec to a [`Compiled`] schedule: the time zone looked up (the
//! system's tz database where present, the bundled one otherwise), clock times and dates parsed,
//! exceptions resolved to instants and checked for overlaps with different states.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time, Weekday as CivilWeekday};
use jiff::tz::TimeZoneDatabase;

use crate::api::{EcsPowerScheduleSpec, ScheduledState, Weekday, Window};

use super::{Compiled, Invalid, local};

/// A weekly window: on each of `days`, from `start` to `end` (`end_days_later` days after).
#[derive(Debug, Clone)]
pub(crate) struct WindowRule {
    pub(crate) days: Vec<CivilWeekday>,
    pub(crate) start: Time,
    pub(crate) end: Time,
    pub(crate) end_days_later: i8,
}

/// A dated exception, resolved to instants.
#[derive(Debug, Clone)]
pub(crate) struct ExceptionRule {
    pub(crate) name: String,
    pub(crate) state: ScheduledState,
    pub(crate) start: Timestamp,
    pub(crate) end: Timestamp,
}

/// Compiles a spec with the operator's tz database: the system's where present, else the one
/// bundled into the binary (so an image without tzdata works).
///
/// # Errors
/// [`Invalid`] with the reason the schedule's `Ready` condition reports.
pub fn compile(spec: &EcsPowerScheduleSpec) -> Result<Compiled, Invalid> {
    let tz = jiff::tz::db()
        .get(&spec.time_zone)
        .or_else(|_| TimeZoneDatabase::bundled().get(&spec.time_zone));
    build(spec, tz.ok())
}

/// Compiles a spec with the given tz database (tests use the bundled one, independent of the host).
///
/// # Errors
/// [`Invalid`] with the reason the schedule's `Ready` condition reports.
pub fn compile_in(spec: &EcsPowerScheduleSpec, db: &TimeZoneDatabase) -> Result<Compiled, Invalid> {
    build(spec, db.get(&spec.time_zone).ok())
}

fn build(spec: &EcsPowerScheduleSpec, tz: Option<jiff::tz::TimeZone>) -> Result<Compiled, Invalid> {
    // An empty name or a fixed offset is not an IANA name, even where the database answers.
    let tz = tz
        .filter(|tz| tz.iana_name().is_some() && !spec.time_zone.is_empty())
        .ok_or_else(|| Invalid::TimeZone(spec.time_zone.clone()))?;
    let (window_state, windows) = match (&spec.running_windows, &spec.stopped_windows) {
        (Some(windows), None) => (ScheduledState::Running, windows),
        (None, Some(windows)) => (ScheduledState::Stopped, windows),
        _ => {
            return Err(Invalid::Window(
                "exactly one of runningWindows and stoppedWindows must be set".into(),
            ));
        }
    };
    let windows = windows
        .iter()
        .enumerate()
        .map(|(i, w)| window_rule(i, w))
        .collect::<Result<Vec<_>, _>>()?;
    let mut holidays = spec
        .holidays
        .iter()
        .map(|h| {
            h.parse::<Date>()
                .ok()
                .filter(|_| h.len() == 10)
                .ok_or_else(|| Invalid::Window(format!("holiday {h:?} is not a date YYYY-MM-DD")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    holidays.sort_unstable();
    holidays.dedup();
    let mut exceptions = Vec::with_capacity(spec.exceptions.len());
    for e in &spec.exceptions {
        let instant = |text: &str| {
            parse_local(text)
                .and_then(|dt| local::resolve(&tz, dt))
                .ok_or_else(|| {
                    Invalid::Window(format!(
                        "exception {:?}: {text:?} is not a local date-time YYYY-MM-DDTHH:MM",
                        e.name
                    ))
                })
        };
        let (start, end) = (instant(&e.start)?, instant(&e.end)?);
        if end <= start {
            return Err(Invalid::Window(format!(
                "exception {:?} ends before it starts",
                e.name
            )));
        }
        exceptions.push(ExceptionRule {
            name: e.name.clone(),
            state: e.state,
            start,
            end,
        });
    }
    for (i, a) in exceptions.iter().enumerate() {
        for b in &exceptions[i + 1..] {
            if a.state != b.state && a.start < b.end && b.start < a.end {
                return Err(Invalid::OverlappingExceptions(
                    a.name.clone(),
                    b.name.clone(),
                ));
            }
        }
    }
    Ok(Compiled {
        tz,
        window_state,
        windows,
        holidays,
        exceptions,
        enforcement: spec.enforcement,
        actions: spec.actions,
    })
}

fn window_rule(index: usize, window: &Window) -> Result<WindowRule, Invalid> {
    let bad = |what: &str| Invalid::Window(format!("window {}: {what}", index + 1));
    if window.days.is_empty() {
        return Err(bad("no days"));
    }
    let start = parse_clock(&window.start)
        .filter(|_| window.start != "24:00")
        .ok_or_else(|| bad("start is not HH:MM"))?;
    if window.end == window.start {
        return Err(bad("end equals start"));
    }
    let (end, end_days_later) = if window.end == "24:00" {
        (Time::midnight(), 1)
    } else {
        let end = parse_clock(&window.end).ok_or_else(|| bad("end is not HH:MM or 24:00"))?;
        (end, i8::from(end <= start))
    };
    let mut days: Vec<CivilWeekday> = window.days.iter().map(|d| civil_weekday(*d)).collect();
    days.dedup();
    Ok(WindowRule {
        days,
        start,
        end,
        end_days_later,
    })
}

/// `HH:MM`, or `24:00` (as midnight; the caller decides what it means).
fn parse_clock(text: &str) -> Option<Time> {
    if text == "24:00" {
        return Some(Time::midnight());
    }
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    Time::new(h, m, 0, 0).ok()
}

/// `YYYY-MM-DDTHH:MM`.
fn parse_local(text: &str) -> Option<DateTime> {
    let (date, clock) = text.split_once('T')?;
    if date.len() != 10 || clock == "24:00" {
        return None;
    }
    Some(date.parse::<Date>().ok()?.to_datetime(parse_clock(clock)?))
}

fn civil_weekday(day: Weekday) -> CivilWeekday {
    match day {
        Weekday::Mon => CivilWeekday::Monday,
        Weekday::Tue => CivilWeekday::Tuesday,
        Weekday::Wed => CivilWeekday::Wednesday,
        Weekday::Thu => CivilWeekday::Thursday,
        Weekday::Fri => CivilWeekday::Friday,
        Weekday::Sat => CivilWeekday::Saturday,
        Weekday::Sun => CivilWeekday::Sunday,
    }
}
