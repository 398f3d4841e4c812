//! The call log: one record per ECS/STS API request the emulator received, including rejected
//! and faulted ones, so tests can assert "exactly one StartInstance for i-x", "every batch was
//! full" or "no answer was throttled". Records carry the access key id and its account but
//! never a secret, a `Signature` or a `SecurityToken`. The log keeps the most
//! recent `callLogCapacity` records; sequence numbers keep counting across clears.

use std::collections::VecDeque;

use serde::Serialize;

/// Which signature scheme a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SignatureScheme {
    /// RPC signature V1 (HMAC-SHA1).
    V1,
    /// ACS3-HMAC-SHA256.
    V3,
    /// No signature (STS AssumeRoleWithOIDC).
    Anonymous,
}

/// One received API request and how it was answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    /// 1, 2, 3… in arrival order.
    pub seq: u64,
    /// When it arrived.
    pub time: jiff::Timestamp,
    /// The `RequestId` answered.
    pub request_id: String,
    /// HTTP method.
    pub method: String,
    /// `Action` (empty when the request named none).
    pub action: String,
    /// Instance ids the request named (`InstanceId`, `InstanceId.N`, `InstanceIds`).
    pub instance_ids: Vec<String>,
    /// `RegionId`, when given.
    pub region_id: Option<String>,
    /// The access key id it claimed, when any.
    pub access_key_id: Option<String>,
    /// The account of that key, once authenticated.
    pub account_id: Option<String>,
    /// The signature scheme, once recognised.
    pub signature: Option<SignatureScheme>,
    /// Whether `DryRun=true` was sent.
    pub dry_run: bool,
    /// HTTP status answered; `None` when the connection was reset.
    pub http_status: Option<u16>,
    /// The ECS error `Code` answered, if any (`DryRunOperation` included).
    pub error_code: Option<String>,
    /// The transport fault applied, if any (`reset`, `truncated`, `nonJson`, `garbage`,
    /// `html502`).
    pub fault: Option<String>,
    /// Whether the action itself ran (not refused by authentication, throttling or a fault
    /// before it, and not a dry run), even if its answer then never reached the client.
    pub acted: bool,
    /// Per-instance `Code` of a `SuccessFirst` batch answer, in answer order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_results: Vec<InstanceResult>,
}

/// One instance's entry of a `SuccessFirst` batch answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceResult {
    /// `InstanceId`.
    pub instance_id: String,
    /// `Code` (`"200"` = accepted).
    pub code: String,
}

impl CallRecord {
    /// Whether the call is one that changes state (Start/Stop/Reboot, single or batch).
    #[must_use]
    pub fn is_write(&self) -> bool {
        crate::actions::is_write(&self.action)
    }

    /// Whether the answer was a `Throttling*` or `Rejected.Throttling` error.
    #[must_use]
    pub fn is_throttled(&self) -> bool {
        self.error_code
            .as_deref()
            .is_some_and(|c| c.starts_with("Throttling") || c == "Rejected.Throttling")
    }

    /// The instances a write actually changed (the client may not have seen the answer, as
    /// with a reset after the action): every named instance of a successful single or
    /// `AllTogether` call, the `"200"` entries of a `SuccessFirst` batch; empty for reads,
    /// refused calls and dry runs.
    #[must_use]
    pub fn accepted_instances(&self) -> Vec<&str> {
        if !self.is_write() || !self.acted || self.error_code.is_some() {
            return Vec::new();
        }
        if self.instance_results.is_empty() {
            self.instance_ids.iter().map(String::as_str).collect()
        } else {
            self.instance_results
                .iter()
                .filter(|r| r.code == "200")
                .map(|r| r.instance_id.as_str())
                .collect()
        }
    }
}

/// Bounded, ordered log.
#[derive(Debug)]
pub(crate) struct CallLog {
    records: VecDeque<CallRecord>,
    next_seq: u64,
    capacity: usize,
}

impl CallLog {
    /// A log keeping at most `capacity` records (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            records: VecDeque::new(),
            next_seq: 1,
            capacity: capacity.max(1),
        }
    }

    /// Appends a record, assigning its sequence number.
    pub(crate) fn push(&mut self, mut record: CallRecord) {
        record.seq = self.next_seq;
        self.next_seq += 1;
        if self.records.len() == self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(record);
    }

    /// Records with `seq > since`, oldest first.
    pub(crate) fn since(&self, since: u64) -> Vec<CallRecord> {
        let start = self.records.partition_point(|r| r.seq <= since);
        self.records.range(start..).cloned().collect()
    }

    /// Forgets every record (sequence numbers continue).
    pub(crate) fn clear(&mut self) {
        self.records.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: &str) -> CallRecord {
        CallRecord {
            seq: 0,
            time: jiff::Timestamp::UNIX_EPOCH,
            request_id: "R".to_owned(),
            method: "POST".to_owned(),
            action: action.to_owned(),
            instance_ids: vec![],
            region_id: None,
            access_key_id: Some("AK1".to_owned()),
            account_id: Some("1".to_owned()),
            signature: Some(SignatureScheme::V1),
            dry_run: false,
            http_status: Some(200),
            error_code: None,
            fault: None,
            acted: true,
            instance_results: vec![],
        }
    }

    #[test]
    fn accepted_instances_and_throttled_answers() {
        let mut single = record("StartInstance");
        single.instance_ids = vec!["i-a".to_owned()];
        assert_eq!(single.accepted_instances(), ["i-a"]);
        single.http_status = None;
        single.fault = Some("reset".to_owned());
        assert_eq!(
            single.accepted_instances(),
            ["i-a"],
            "reset after the action"
        );
        single.acted = false;
        assert!(single.accepted_instances().is_empty(), "reset before it");
        let mut refused = record("StopInstance");
        refused.instance_ids = vec!["i-a".to_owned()];
        refused.error_code = Some("Throttling.User".to_owned());
        assert!(refused.is_throttled());
        assert!(refused.accepted_instances().is_empty());
        let mut batch = record("StartInstances");
        batch.instance_ids = vec!["i-a".to_owned(), "i-b".to_owned()];
        batch.instance_results = vec![
            InstanceResult {
                instance_id: "i-b".to_owned(),
                code: "OperationDenied.NoStock".to_owned(),
            },
            InstanceResult {
                instance_id: "i-a".to_owned(),
                code: "200".to_owned(),
            },
        ];
        assert_eq!(batch.accepted_instances(), ["i-a"]);
        assert!(!batch.is_throttled());
        let mut read = record("DescribeInstances");
        read.instance_ids = vec!["i-a".to_owned()];
        assert!(read.accepted_instances().is_empty());
    }

    #[test]
    fn numbers_and_bounds_records() {
        let mut log = CallLog::new(2);
        log.push(record("A"));
        log.push(record("B"));
        log.push(record("C"));
        let all = log.since(0);
        assert_eq!(
            all.iter()
                .map(|r| (r.seq, r.action.as_str()))
                .collect::<Vec<_>>(),
            [(2, "B"), (3, "C")]
        );
        assert_eq!(log.since(2).len(), 1);
        log.clear();
        log.push(record("D"));
        assert_eq!(log.since(0)[0].seq, 4);
    }

    #[test]
    fn write_actions_are_recognised() {
        assert!(record("StartInstance").is_write());
        assert!(record("StopInstances").is_write());
        assert!(!record("DescribeInstances").is_write());
    }

    #[test]
    fn serializes_camel_case() {
        let v = serde_json::to_value(record("A")).unwrap_or_default();
        assert_eq!(v["accessKeyId"], "AK1");
        assert_eq!(v["accountId"], "1");
        assert_eq!(v["acted"], true);
        assert!(v.get("instanceResults").is_none(), "omitted when empty");
        assert_eq!(v["httpStatus"], 200);
        assert_eq!(v["signature"], "V1");
    }
}
