//! The schedule as a timeline of instants: window and holiday intervals for a range of local days,
//! merged, then swept boundary by boundary into transitions.

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp, ToSpan};

use super::{Compiled, Evaluation, ScheduleSource, ScheduledState, Transition, UPCOMING, local};

/// How far [`evaluate`] looks back for `since` and ahead for the upcoming transitions: a short span
/// first (the usual weekly schedule), then wider ones (holidays and exceptions months away).
const SPANS_DAYS: [i64; 3] = [9, 40, 370];

/// Half-open `[start, end)`, sorted and disjoint once merged.
type Interval = (Timestamp, Timestamp);

/// The intervals that hold between two instants, ready for point queries.
struct Range<'a> {
    schedule: &'a Compiled,
    windows: Vec<Interval>,
    holidays: Vec<Interval>,
}

impl<'a> Range<'a> {
    /// Window and holiday intervals for every local day that can touch `[from, until)`.
    fn new(schedule: &'a Compiled, from: Timestamp, until: Timestamp) -> Self {
        let tz = &schedule.tz;
        // A window belongs to its start day and may end the next day: start two days early.
        let first = tz.to_datetime(from).date().saturating_sub(2.days());
        let last = tz.to_datetime(until).date().saturating_add(1.days());
        let mut windows = Vec::new();
        let mut day = first;
        while day <= last {
            for rule in &schedule.windows {
                if !rule.days.contains(&day.weekday()) {
                    continue;
                }
                let end_day = day.saturating_add(i64::from(rule.end_days_later).days());
                let start = local::resolve(tz, day.to_datetime(rule.start));
                let end = local::resolve(tz, end_day.to_datetime(rule.end));
                if let (Some(start), Some(end)) = (start, end)
                    && start < end
                {
                    windows.push((start, end));
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        let holidays = schedule
            .holidays
            .iter()
            .filter(|d| **d >= first && **d <= last)
            .filter_map(|d| whole_day(schedule, *d))
            .collect();
        Range {
            schedule,
            windows: merge(windows),
            holidays: merge(holidays),
        }
    }

    /// The state at `t`, by precedence: exception, holiday, window, default.
    fn at(&self, t: Timestamp) -> (ScheduledState, ScheduleSource) {
        if let Some(e) = self
            .schedule
            .exceptions
            .iter()
            .find(|e| e.start <= t && t < e.end)
        {
            return (e.state, ScheduleSource::Exception);
        }
        if contains(&self.holidays, t) {
            return (ScheduledState::Stopped, ScheduleSource::Holiday);
        }
        if contains(&self.windows, t) {
            return (self.schedule.window_state, ScheduleSource::Window);
        }
        (
            self.schedule.window_state.opposite(),
            ScheduleSource::Default,
        )
    }

    /// Every instant in `[from, until)` where some rule starts or ends, sorted, without repeats.
    fn boundaries(&self, from: Timestamp, until: Timestamp) -> Vec<Timestamp> {
        let exceptions = self.schedule.exceptions.iter().map(|e| (e.start, e.end));
        let mut all: Vec<Timestamp> = self
            .windows
            .iter()
            .chain(&self.holidays)
            .copied()
            .chain(exceptions)
            .flat_map(|(start, end)| [start, end])
            .filter(|t| from <= *t && *t < until)
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The transitions in `[from, until)`.
    fn transitions(&self, from: Timestamp, until: Timestamp) -> Vec<Transition> {
        let mut previous = self.at(just_before(from)).0;
        let mut found = Vec::new();
        for time in self.boundaries(from, until) {
            let (state, source) = self.at(time);
            if state != previous {
                found.push(Transition {
                    time,
                    state,
                    source,
                });
                previous = state;
            }
        }
        found
    }
}

/// A holiday as the instants of its whole local day.
fn whole_day(schedule: &Compiled, day: Date) -> Option<Interval> {
    let start = local::resolve(&schedule.tz, day.to_datetime(jiff::civil::Time::midnight()))?;
    let end = local::resolve(
        &schedule.tz,
        day.tomorrow()
            .ok()?
            .to_datetime(jiff::civil::Time::midnight()),
    )?;
    Some((start, end))
}

/// Sorts intervals and merges the overlapping and adjacent ones.
fn merge(mut intervals: Vec<Interval>) -> Vec<Interval> {
    intervals.sort_unstable();
    let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
    for (start, end) in intervals {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Whether `t` lies in one of the sorted, disjoint intervals.
fn contains(intervals: &[Interval], t: Timestamp) -> bool {
    let after = intervals.partition_point(|(start, _)| *start <= t);
    after > 0 && t < intervals[after - 1].1
}

fn just_before(t: Timestamp) -> Timestamp {
    t.checked_sub(SignedDuration::from_nanos(1)).unwrap_or(t)
}

fn just_after(t: Timestamp) -> Timestamp {
    t.checked_add(SignedDuration::from_nanos(1)).unwrap_or(t)
}

fn shifted(t: Timestamp, days: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_hours(24 * days))
        .unwrap_or(if days < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        })
}

pub(crate) fn transitions(
    schedule: &Compiled,
    from: Timestamp,
    until: Timestamp,
) -> Vec<Transition> {
    if from >= until {
        return Vec::new();
    }
    Range::new(schedule, from, until).transitions(from, until)
}

pub(crate) fn evaluate(schedule: &Compiled, now: Timestamp) -> Evaluation {
    let (state, source) = Range::new(schedule, now, just_after(now)).at(now);
    let since = SPANS_DAYS.iter().find_map(|days| {
        transitions(schedule, shifted(now, -days), just_after(now))
            .last()
            .map(|t| t.time)
    });
    let mut upcoming = Vec::new();
    for days in SPANS_DAYS {
        upcoming = transitions(schedule, just_after(now), shifted(now, days));
        if upcoming.len() >= UPCOMING {
            break;
        }
    }
    upcoming.truncate(UPCOMING);
    Evaluation {
        state,
        source,
        since,
        upcoming,
    }
}
