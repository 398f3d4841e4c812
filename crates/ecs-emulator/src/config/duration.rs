//! Durations in the state file and the admin API: strings such as `2s`, `500ms`, `1m 30s`
//! (parsed by jiff's friendly format), or a bare number of seconds (`0`, `1.5`). They are
//! written back as `<n>s` or `<n>ms`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses `2s`, `500ms`, `1m 30s`, `0`, `1.5` (bare numbers are seconds).
///
/// # Errors
/// A message saying what was expected.
pub fn parse(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return from_secs(secs, input);
    }
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|_| format!("{input:?} is not a duration such as 2s, 500ms or 1m 30s"))?;
    Duration::try_from(d).map_err(|_| format!("duration {input:?} must not be negative"))
}

fn from_secs(secs: f64, input: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("duration {input:?} must be a finite, non-negative number of seconds"))
}

/// Formats as `<n>s` when whole seconds, else `<n>ms` (sub-millisecond precision is dropped).
#[must_use]
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Number(f64),
    Text(String),
}

fn from_raw(raw: Raw) -> Result<Duration, String> {
    match raw {
        Raw::Number(n) => from_secs(n, &n.to_string()),
        Raw::Text(s) => parse(&s),
    }
}

/// serde `with` for a required [`Duration`].
///
/// # Errors
/// The deserializer's error, or a message when the value is not a duration.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    from_raw(Raw::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

/// serde `with` for a required [`Duration`].
///
/// # Errors
/// The serializer's error.
pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*d))
}

/// serde `with` for an optional [`Duration`].
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::{Raw, format, from_raw};

    /// Deserializes `null`/absent as `None`.
    ///
    /// # Errors
    /// The deserializer's error, or a message when the value is not a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<Raw>::deserialize(deserializer)?
            .map(from_raw)
            .transpose()
            .map_err(serde::de::Error::custom)
    }

    /// Serializes `None` as `null`.
    ///
    /// # Errors
    /// The serializer's error.
    #[allow(clippy::ref_option)]
    pub fn serialize<S: Serializer>(
        d: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => serializer.serialize_str(&format(*d)),
            None => serializer.serialize_none(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("1.5").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(parse("soon").is_err());
        assert!(parse("-2s").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(Duration::from_secs(2)), "2s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }

    #[test]
    fn deserializes_numbers_and_strings_from_yaml() {
        #[derive(Deserialize)]
        struct T {
            #[serde(with = "super")]
            d: Duration,
        }
        assert_eq!(serde_yaml::from_str::<T>("d: 0").unwrap().d, Duration::ZERO);
        assert_eq!(
            serde_yaml::from_str::<T>("d: 3").unwrap().d,
            Duration::from_secs(3)
        );
        assert_eq!(
            serde_yaml::from_str::<T>("d: 200ms").unwrap().d,
            Duration::from_millis(200)
        );
        assert!(serde_yaml::from_str::<T>("d: later").is_err());
    }
}
