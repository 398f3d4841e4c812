//! Table tests of the evaluation, including spring-forward and fall-back nights in Berlin and New
//! York, and a property test against a minute-by-minute oracle. Time zones come from the bundled
//! database, so the host's tzdata does not matter.

use std::fmt::Write as _;

use jiff::tz::TimeZoneDatabase;
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::instance::{self, EffectiveState, Override, OverrideState};
use super::*;
use crate::api::EcsPowerScheduleSpec;

fn spec(yaml: &str) -> EcsPowerScheduleSpec {
    serde_yaml::from_str(yaml).unwrap()
}

fn compiled(yaml: &str) -> Compiled {
    compile_in(&spec(yaml), &TimeZoneDatabase::bundled()).unwrap()
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// The transitions in `[from, until)` as `(time, state)` strings.
fn changes(schedule: &Compiled, from: &str, until: &str) -> Vec<(String, &'static str)> {
    transitions(schedule, ts(from), ts(until))
        .into_iter()
        .map(|t| (t.time.to_string(), t.state.as_str()))
        .collect()
}

fn window(tz: &str, list: &str, days: &str, start: &str, end: &str) -> Compiled {
    compiled(&format!(
        "timeZone: {tz}\n{list}:\n- days: [{days}]\n  start: \"{start}\"\n  end: \"{end}\"\n"
    ))
}

/// One row: zone, days, start, end, from, until, the expected transitions.
type DstRow<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
);

#[test]
fn dst_table() {
    // (zone, days, start, end, from, until, expected transitions)
    let table: &[DstRow] = &[
        // Spring forward, Berlin: 02:30 does not exist; it means 03:00 CEST = 01:00Z.
        (
            "Europe/Berlin",
            "Sun",
            "02:30",
            "05:00",
            "2026-03-28T00:00Z",
            "2026-03-30T00:00Z",
            &[
                ("2026-03-29T01:00:00Z", "Running"),
                ("2026-03-29T03:00:00Z", "Stopped"),
            ],
        ),
        // Spring forward, New York: 02:30 means 03:00 EDT = 07:00Z.
        (
            "America/New_York",
            "Sun",
            "02:30",
            "09:00",
            "2026-03-07T00:00Z",
            "2026-03-10T00:00Z",
            &[
                ("2026-03-08T07:00:00Z", "Running"),
                ("2026-03-08T13:00:00Z", "Stopped"),
            ],
        ),
        // An end in the gap: the window ends when the gap ends.
        (
            "Europe/Berlin",
            "Sat",
            "23:00",
            "02:30",
            "2026-03-28T00:00Z",
            "2026-03-30T00:00Z",
            &[
                ("2026-03-28T22:00:00Z", "Running"),
                ("2026-03-29T01:00:00Z", "Stopped"),
            ],
        ),
        // Fall back, Berlin: 02:30 occurs twice; the first occurrence (CEST) = 00:30Z.
        (
            "Europe/Berlin",
            "Sun",
            "02:30",
            "05:00",
            "2026-10-24T00:00Z",
            "2026-10-26T00:00Z",
            &[
                ("2026-10-25T00:30:00Z", "Running"),
                ("2026-10-25T04:00:00Z", "Stopped"),
            ],
        ),
        // An end in the fold: the first 02:30; the repeated hour does not reopen the window.
        (
            "Europe/Berlin",
            "Sat",
            "22:00",
            "02:30",
            "2026-10-24T00:00Z",
            "2026-10-26T00:00Z",
            &[
                ("2026-10-24T20:00:00Z", "Running"),
                ("2026-10-25T00:30:00Z", "Stopped"),
            ],
        ),
        // Fall back, New York: 01:30 occurs twice; first occurrence (EDT) = 05:30Z.
        (
            "America/New_York",
            "Sun",
            "01:30",
            "03:00",
            "2026-10-31T00:00Z",
            "2026-11-02T00:00Z",
            &[
                ("2026-11-01T05:30:00Z", "Running"),
                ("2026-11-01T08:00:00Z", "Stopped"),
            ],
        ),
        // 22:00–06:00 lasts 7 h on the spring night …
        (
            "Europe/Berlin",
            "Sat",
            "22:00",
            "06:00",
            "2026-03-28T00:00Z",
            "2026-03-30T00:00Z",
            &[
                ("2026-03-28T21:00:00Z", "Running"),
                ("2026-03-29T04:00:00Z", "Stopped"),
            ],
        ),
        // … and 9 h on the fall night.
        (
            "Europe/Berlin",
            "Sat",
            "22:00",
            "06:00",
            "2026-10-24T00:00Z",
            "2026-10-26T00:00Z",
            &[
                ("2026-10-24T20:00:00Z", "Running"),
                ("2026-10-25T05:00:00Z", "Stopped"),
            ],
        ),
        (
            "America/New_York",
            "Sat",
            "22:00",
            "06:00",
            "2026-03-07T00:00Z",
            "2026-03-09T00:00Z",
            &[
                ("2026-03-08T03:00:00Z", "Running"),
                ("2026-03-08T10:00:00Z", "Stopped"),
            ],
        ),
        (
            "America/New_York",
            "Sat",
            "22:00",
            "06:00",
            "2026-10-31T00:00Z",
            "2026-11-02T00:00Z",
            &[
                ("2026-11-01T02:00:00Z", "Running"),
                ("2026-11-01T11:00:00Z", "Stopped"),
            ],
        ),
        // Asia/Shanghai (no DST): a control.
        (
            "Asia/Shanghai",
            "Sun",
            "02:30",
            "05:00",
            "2026-03-28T00:00Z",
            "2026-03-30T00:00Z",
            &[
                ("2026-03-28T18:30:00Z", "Running"),
                ("2026-03-28T21:00:00Z", "Stopped"),
            ],
        ),
    ];
    for (zone, days, start, end, from, until, expected) in table {
        let schedule = window(zone, "runningWindows", days, start, end);
        let expected: Vec<(String, &str)> = expected
            .iter()
            .map(|(t, s)| ((*t).to_string(), *s))
            .collect();
        assert_eq!(
            changes(&schedule, from, until),
            expected,
            "{zone} {days} {start}-{end}"
        );
    }
}

#[test]
fn a_stopped_window_across_the_fold_does_not_flap() {
    // Stopped 01:00–04:00 local on the fall-back Sunday: 4 real hours, one stop, one start.
    let schedule = window("Europe/Berlin", "stoppedWindows", "Sun", "01:00", "04:00");
    assert_eq!(
        changes(&schedule, "2026-10-24T12:00Z", "2026-10-25T12:00Z"),
        [
            ("2026-10-24T23:00:00Z".to_string(), "Stopped"),
            ("2026-10-25T03:00:00Z".to_string(), "Running")
        ]
    );
    for minute in (0..240).step_by(15) {
        let t = ts("2026-10-24T23:00Z") + SignedDuration::from_mins(minute);
        assert_eq!(evaluate(&schedule, t).state, ScheduledState::Stopped, "{t}");
    }
}

#[test]
fn an_overnight_window_belongs_to_its_start_day() {
    // Fri 22:00–06:00 runs Friday night only, not Saturday night.
    let schedule = window("Asia/Shanghai", "runningWindows", "Fri", "22:00", "06:00");
    assert_eq!(
        changes(&schedule, "2026-05-01T00:00Z", "2026-05-04T00:00Z"),
        [
            ("2026-05-01T14:00:00Z".to_string(), "Running"),
            ("2026-05-01T22:00:00Z".to_string(), "Stopped")
        ]
    );
}

#[test]
fn adjacent_windows_and_full_days_make_no_transition_between_them() {
    let schedule = compiled(
        "timeZone: Europe/Berlin\nrunningWindows:\n\
         - {days: [Mon], start: \"08:00\", end: \"12:00\"}\n\
         - {days: [Mon], start: \"12:00\", end: \"18:00\"}\n\
         - {days: [Sat, Sun], start: \"00:00\", end: \"24:00\"}\n",
    );
    assert_eq!(
        changes(&schedule, "2026-06-05T00:00Z", "2026-06-09T00:00Z"),
        [
            // Saturday 00:00 CEST to Monday 00:00, then Monday 08:00 to 18:00.
            ("2026-06-05T22:00:00Z".to_string(), "Running"),
            ("2026-06-07T22:00:00Z".to_string(), "Stopped"),
            ("2026-06-08T06:00:00Z".to_string(), "Running"),
            ("2026-06-08T16:00:00Z".to_string(), "Stopped"),
        ]
    );
}

const OFFICE: &str = "timeZone: Europe/Berlin\nrunningWindows:\n\
    - {days: [Mon, Tue, Wed, Thu, Fri], start: \"08:00\", end: \"19:00\"}\n";

#[test]
fn holidays_stop_the_whole_local_day_and_a_source_change_is_no_transition() {
    let schedule = compiled(&format!(
        "{OFFICE}holidays: [\"2026-12-24\", \"2026-12-25\"]\n"
    ));
    // Wed 23rd: 08:00–19:00 CET; Thu 24th and Fri 25th holidays; next start Mon 28th 07:00Z.
    assert_eq!(
        changes(&schedule, "2026-12-23T00:00Z", "2026-12-29T00:00Z"),
        [
            ("2026-12-23T07:00:00Z".to_string(), "Running"),
            ("2026-12-23T18:00:00Z".to_string(), "Stopped"),
            ("2026-12-28T07:00:00Z".to_string(), "Running"),
            ("2026-12-28T18:00:00Z".to_string(), "Stopped"),
        ]
    );
    let now = evaluate(&schedule, ts("2026-12-24T10:00Z"));
    assert_eq!(now.state, ScheduledState::Stopped);
    assert_eq!(now.source, ScheduleSource::Holiday);
    assert_eq!(now.since, Some(ts("2026-12-23T18:00Z")));
    let next = now.next().unwrap();
    assert_eq!(
        (next.time, next.state),
        (ts("2026-12-28T07:00Z"), ScheduledState::Running)
    );
    assert_eq!(now.upcoming.len(), UPCOMING);
}

#[test]
fn exceptions_take_precedence_and_may_cross_a_fold() {
    // Running from 01:00 to 04:00 local on the fall-back Sunday: 23:00Z to 03:00Z, 4 hours.
    let schedule = compiled(&format!(
        "{OFFICE}exceptions:\n\
         - {{name: fold-night, state: Running, start: \"2026-10-25T01:00\", end: \"2026-10-25T04:00\"}}\n\
         - {{name: no-office, state: Stopped, start: \"2026-10-26T00:00\", end: \"2026-10-27T00:00\"}}\n"
    ));
    assert_eq!(
        changes(&schedule, "2026-10-24T12:00Z", "2026-10-27T12:00Z"),
        [
            ("2026-10-24T23:00:00Z".to_string(), "Running"),
            ("2026-10-25T03:00:00Z".to_string(), "Stopped"),
            // Monday the 26th is excepted; Tuesday 08:00 CET.
            ("2026-10-27T07:00:00Z".to_string(), "Running"),
        ]
    );
    let during = evaluate(&schedule, ts("2026-10-26T10:00Z"));
    assert_eq!(
        (during.state, during.source),
        (ScheduledState::Stopped, ScheduleSource::Exception)
    );
}

#[test]
fn invalid_schedules_name_their_reason() {
    let db = TimeZoneDatabase::bundled();
    let reason = |yaml: &str| compile_in(&spec(yaml), &db).unwrap_err().reason();
    assert_eq!(
        reason("timeZone: Mars/Olympus\nrunningWindows: []\n"),
        "InvalidTimeZone"
    );
    assert_eq!(reason("timeZone: UTC\n"), "InvalidWindow");
    assert_eq!(
        reason("timeZone: UTC\nrunningWindows: []\nstoppedWindows: []\n"),
        "InvalidWindow"
    );
    assert_eq!(
        reason(
            "timeZone: UTC\nrunningWindows: [{days: [Mon], start: \"08:00\", end: \"08:00\"}]\n"
        ),
        "InvalidWindow"
    );
    assert_eq!(
        reason(
            "timeZone: UTC\nrunningWindows: [{days: [Mon], start: \"24:00\", end: \"08:00\"}]\n"
        ),
        "InvalidWindow"
    );
    assert_eq!(
        reason("timeZone: UTC\nrunningWindows: []\nholidays: [\"2026-02-30\"]\n"),
        "InvalidWindow"
    );
    assert_eq!(
        reason(
            "timeZone: UTC\nrunningWindows: []\nexceptions:\n\
             - {name: a, state: Running, start: \"2026-01-01T10:00\", end: \"2026-01-01T12:00\"}\n\
             - {name: b, state: Stopped, start: \"2026-01-01T11:59\", end: \"2026-01-01T13:00\"}\n"
        ),
        "OverlappingExceptions"
    );
    // Same state: fine; touching (half-open) with different states: fine.
    compile_in(
        &spec(
            "timeZone: UTC\nrunningWindows: []\nexceptions:\n\
             - {name: a, state: Running, start: \"2026-01-01T10:00\", end: \"2026-01-01T12:00\"}\n\
             - {name: b, state: Running, start: \"2026-01-01T11:00\", end: \"2026-01-01T13:00\"}\n\
             - {name: c, state: Stopped, start: \"2026-01-01T13:00\", end: \"2026-01-01T14:00\"}\n",
        ),
        &db,
    )
    .unwrap();
}

#[test]
fn evaluation_depends_on_now_alone_so_missed_windows_are_not_replayed() {
    let schedule = compiled(OFFICE);
    // A Wednesday noon after a week of downtime: Running since 08:00 local, next stop 19:00.
    let now = evaluate(&schedule, ts("2026-06-10T10:00Z"));
    assert_eq!(
        (now.state, now.source),
        (ScheduledState::Running, ScheduleSource::Window)
    );
    assert_eq!(now.since, Some(ts("2026-06-10T06:00Z")));
    assert_eq!(now.next().unwrap().time, ts("2026-06-10T17:00Z"));
    // Exactly at a transition: the new state, since now.
    let edge = evaluate(&schedule, ts("2026-06-10T17:00Z"));
    assert_eq!(edge.state, ScheduledState::Stopped);
    assert_eq!(edge.since, Some(ts("2026-06-10T17:00Z")));
    assert_eq!(edge.source, ScheduleSource::Default);
}

#[test]
fn a_schedule_that_never_changes_has_no_since_and_no_next() {
    let schedule = compiled(
        "timeZone: UTC\nrunningWindows: [{days: [Mon, Tue, Wed, Thu, Fri, Sat, Sun], start: \"00:00\", end: \"24:00\"}]\n",
    );
    let now = evaluate(&schedule, ts("2026-06-10T10:00Z"));
    assert_eq!(now.state, ScheduledState::Running);
    assert_eq!(now.since, None);
    assert!(now.upcoming.is_empty());
}

#[test]
fn overrides_actions_and_unmanaged_states() {
    let schedule = compiled(OFFICE);
    let night = ts("2026-06-10T20:00Z"); // Wednesday 22:00 local: Stopped until Thu 06:00Z.
    let evaluation = evaluate(&schedule, night);
    let run = |until| Override {
        state: ScheduledState::Running,
        until,
    };
    // Without `until`: until the next scheduled transition (then it holds the same state anyway).
    let held = instance::apply(
        &evaluation,
        ScheduleActions::StartAndStop,
        Some(run(None)),
        None,
        night,
    );
    assert_eq!(held.effective, EffectiveState::Running);
    assert_eq!(held.source, ScheduleSource::Override);
    let remembered = held.override_state.unwrap();
    assert_eq!(remembered.until, Some(ts("2026-06-11T06:00Z")));
    // Later, evaluated afresh, the remembered end stays (not the following transition).
    let later = ts("2026-06-11T10:00Z");
    let after = instance::apply(
        &evaluate(&schedule, later),
        ScheduleActions::StartAndStop,
        Some(run(None)),
        Some(remembered),
        later,
    );
    assert_eq!(after.source, ScheduleSource::Window);
    assert!(!after.override_state.unwrap().active);
    // With `until`.
    let until = instance::apply(
        &evaluation,
        ScheduleActions::StartAndStop,
        Some(run(Some(ts("2026-06-10T21:00Z")))),
        None,
        night,
    );
    assert_eq!(
        until.override_state,
        Some(OverrideState {
            state: ScheduledState::Running,
            until: Some(ts("2026-06-10T21:00Z")),
            active: true
        })
    );
    // A changed override state is a new override: the remembered end does not apply.
    let stop = instance::apply(
        &evaluate(&schedule, later),
        ScheduleActions::StartAndStop,
        Some(Override {
            state: ScheduledState::Stopped,
            until: None,
        }),
        Some(remembered),
        later,
    );
    assert_eq!(stop.effective, EffectiveState::Stopped);
    // Actions.
    assert_eq!(
        instance::managed(ScheduleActions::StopOnly, ScheduledState::Running),
        EffectiveState::Unmanaged
    );
    assert_eq!(
        instance::managed(ScheduleActions::StopOnly, ScheduledState::Stopped),
        EffectiveState::Stopped
    );
    assert_eq!(
        instance::managed(ScheduleActions::StartOnly, ScheduledState::Stopped),
        EffectiveState::Unmanaged
    );
    assert_eq!(
        instance::managed(ScheduleActions::StartOnly, ScheduledState::Running),
        EffectiveState::Running
    );
}

/// The minute-by-minute oracle: a window holds at `t` when some local start day within the last two
/// days has it start at or before `t` and end after `t`; no merging, no sweep.
fn oracle(spec: &EcsPowerScheduleSpec, schedule: &Compiled, t: Timestamp) -> ScheduledState {
    let tz = schedule.time_zone();
    let today = tz.to_datetime(t).date();
    let clock = |text: &str| {
        if text == "24:00" {
            (jiff::civil::Time::midnight(), true)
        } else {
            (
                format!("{text}:00").parse::<jiff::civil::Time>().unwrap(),
                false,
            )
        }
    };
    for back in 0..3 {
        let day = today - jiff::Span::new().days(back);
        for holiday in &spec.holidays {
            let date: jiff::civil::Date = holiday.parse().unwrap();
            let start =
                local::resolve(tz, date.to_datetime(jiff::civil::Time::midnight())).unwrap();
            let end = local::resolve(
                tz,
                date.tomorrow()
                    .unwrap()
                    .to_datetime(jiff::civil::Time::midnight()),
            )
            .unwrap();
            if start <= t && t < end {
                return ScheduledState::Stopped;
            }
        }
        for w in spec.running_windows.iter().flatten() {
            let name = format!("{:?}", day.weekday());
            if !w.days.iter().any(|d| name.starts_with(&format!("{d:?}"))) {
                continue;
            }
            let (start, _) = clock(&w.start);
            let (end, midnight) = clock(&w.end);
            let end_day = if midnight || end <= start {
                day.tomorrow().unwrap()
            } else {
                day
            };
            let start = local::resolve(tz, day.to_datetime(start)).unwrap();
            let end = local::resolve(tz, end_day.to_datetime(end)).unwrap();
            if start <= t && t < end {
                return ScheduledState::Running;
            }
        }
    }
    ScheduledState::Stopped
}

#[test]
fn property_transitions_match_a_minute_by_minute_oracle_around_dst() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let ranges = [
        (
            "Europe/Berlin",
            "2026-03-27T00:00Z",
            "2026-03-31T00:00Z",
            "2026-03-29",
        ),
        (
            "Europe/Berlin",
            "2026-10-23T00:00Z",
            "2026-10-27T00:00Z",
            "2026-10-25",
        ),
        (
            "America/New_York",
            "2026-03-06T00:00Z",
            "2026-03-10T00:00Z",
            "2026-03-08",
        ),
        (
            "America/New_York",
            "2026-10-30T00:00Z",
            "2026-11-03T00:00Z",
            "2026-11-01",
        ),
    ];
    for round in 0..40 {
        let (zone, from, until, dst_day) = ranges[round % ranges.len()];
        let mut yaml = format!("timeZone: {zone}\nrunningWindows:\n");
        for _ in 0..rng.random_range(1..4) {
            let picked: Vec<&str> = days
                .iter()
                .copied()
                .filter(|_| rng.random_bool(0.5))
                .collect();
            let picked = if picked.is_empty() {
                vec!["Sun"]
            } else {
                picked
            };
            // Times on the half hour, weighted towards the hours that DST skips or repeats.
            let time = |rng: &mut StdRng| {
                let hour = if rng.random_bool(0.5) {
                    rng.random_range(0..4)
                } else {
                    rng.random_range(0..24)
                };
                format!("{hour:02}:{:02}", if rng.random_bool(0.5) { 0 } else { 30 })
            };
            let start = time(&mut rng);
            let mut end = if rng.random_bool(0.1) {
                "24:00".to_string()
            } else {
                time(&mut rng)
            };
            if end == start {
                end = "24:00".to_string();
            }
            writeln!(
                yaml,
                "- {{days: [{}], start: \"{start}\", end: \"{end}\"}}",
                picked.join(", ")
            )
            .unwrap();
        }
        if rng.random_bool(0.3) {
            writeln!(yaml, "holidays: [\"{dst_day}\"]").unwrap();
        }
        let spec = spec(&yaml);
        let schedule = compile_in(&spec, &TimeZoneDatabase::bundled()).unwrap();
        let (from, until) = (ts(from), ts(until));
        let mut expected = Vec::new();
        let mut previous = oracle(&spec, &schedule, from - SignedDuration::from_mins(1));
        let mut t = from;
        while t < until {
            let state = oracle(&spec, &schedule, t);
            if state != previous {
                expected.push((t, state));
                previous = state;
            }
            t += SignedDuration::from_mins(1);
        }
        let got: Vec<(Timestamp, ScheduledState)> = transitions(&schedule, from, until)
            .into_iter()
            .map(|t| (t.time, t.state))
            .collect();
        assert_eq!(got, expected, "{yaml}");
        // And evaluate agrees with the oracle at each transition and just before it.
        for (time, state) in &expected {
            assert_eq!(evaluate(&schedule, *time).state, *state, "{yaml} at {time}");
        }
    }
}
