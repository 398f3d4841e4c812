//! `ecs-power-operator schedule preview`: one `EcsPowerSchedule` manifest in, its transitions
//! between two instants out, as a table (UTC and local time) or as JSON lines. The same
//! [`compile`] and [`transitions`] as the controller.

use std::fmt::Write as _;

use jiff::Timestamp;

use crate::api::EcsPowerSchedule;

use super::{Invalid, Transition, compile, transitions};

/// Why a preview failed.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// The file is not an EcsPowerSchedule manifest.
    #[error("not an EcsPowerSchedule manifest: {0}")]
    Manifest(String),
    /// The schedule is invalid; the reason is the one the controller reports.
    #[error("schedule {name:?} is invalid ({}): {invalid}", invalid.reason())]
    Invalid {
        /// `metadata.name`.
        name: String,
        /// Why.
        invalid: Invalid,
    },
}

impl PreviewError {
    /// The process exit code: 2 for an invalid schedule, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            PreviewError::Manifest(_) => 1,
            PreviewError::Invalid { .. } => 2,
        }
    }
}

/// Parses the manifest and renders its transitions in `[from, until)`.
///
/// # Errors
/// [`PreviewError`] when the manifest cannot be read as an EcsPowerSchedule or is invalid.
pub fn run(
    manifest: &str,
    from: Timestamp,
    until: Timestamp,
    json: bool,
) -> Result<String, PreviewError> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(manifest).map_err(|e| PreviewError::Manifest(e.to_string()))?;
    if value.get("kind").and_then(serde_yaml::Value::as_str) != Some("EcsPowerSchedule") {
        return Err(PreviewError::Manifest(
            "kind is not EcsPowerSchedule".into(),
        ));
    }
    let schedule: EcsPowerSchedule =
        serde_yaml::from_value(value).map_err(|e| PreviewError::Manifest(e.to_string()))?;
    let compiled = compile(&schedule.spec).map_err(|invalid| PreviewError::Invalid {
        name: schedule.metadata.name.clone().unwrap_or_default(),
        invalid,
    })?;
    let found = transitions(&compiled, from, until);
    Ok(if json {
        render_json(&found)
    } else {
        render_table(&found, compiled.time_zone())
    })
}

/// One JSON object a line: `{"time":"2026-03-29T01:00:00Z","state":"Running","source":"Window"}`.
pub fn render_json(found: &[Transition]) -> String {
    /// One line, its keys in this order.
    #[derive(serde::Serialize)]
    struct Line<'a> {
        time: String,
        state: &'a str,
        source: &'a str,
    }
    let mut out = String::new();
    for t in found {
        let line = Line {
            time: t.time.to_string(),
            state: t.state.as_str(),
            source: t.source.as_str(),
        };
        if let Ok(line) = serde_json::to_string(&line) {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// A table: the UTC time, the local time with its offset, the state and the source.
pub fn render_table(found: &[Transition], tz: &jiff::tz::TimeZone) -> String {
    let zone = tz.iana_name().unwrap_or("local");
    let local_header = format!("LOCAL ({zone})");
    let rows: Vec<[String; 4]> = found
        .iter()
        .map(|t| {
            let local = t.time.to_zoned(tz.clone());
            [
                t.time.to_string(),
                local.strftime("%Y-%m-%d %H:%M %:z %a").to_string(),
                t.state.as_str().to_string(),
                t.source.as_str().to_string(),
            ]
        })
        .collect();
    let header = [
        "TIME (UTC)".to_string(),
        local_header,
        "STATE".to_string(),
        "SOURCE".to_string(),
    ];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if rows.is_empty() {
        out.push_str("(no transitions in this range)\n");
    }
    out
}
