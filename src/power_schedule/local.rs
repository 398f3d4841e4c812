//! Local date-times to instants, with the schedule's daylight-saving rules: a time in a
//! spring-forward gap means the first instant after the gap; a time in a fall-back fold means its
//! first occurrence.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};

/// The instant a local date-time means in `tz`; `None` only outside jiff's supported range.
pub(crate) fn resolve(tz: &TimeZone, local: DateTime) -> Option<Timestamp> {
    match tz.to_ambiguous_timestamp(local).offset() {
        AmbiguousOffset::Unambiguous { offset } | AmbiguousOffset::Fold { before: offset, .. } => {
            offset.to_timestamp(local).ok()
        }
        AmbiguousOffset::Gap { before, after } => {
            // Read with the offset after the gap, the local time lies before the transition; the
            // first transition after that is the end of the gap.
            let probe = after.to_timestamp(local).ok()?;
            tz.following(probe)
                .next()
                .map(|transition| transition.timestamp())
                .or_else(|| before.to_timestamp(local).ok())
        }
    }
}
