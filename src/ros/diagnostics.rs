//! The node's `/diagnostics` message built from its statistics.

use r2r::diagnostic_msgs::msg::{DiagnosticArray, DiagnosticStatus, KeyValue};
use r2r::std_msgs::msg::Header;

use crate::runtime::{DropReason, StatsSnapshot};

/// What the node reports besides its counters.
pub struct DiagnosticsContext {
    pub node_name: String,
    pub device_label: String,
    pub mode: String,
    pub model: String,
}

/// One `/diagnostics` message. WARN while frames are being dropped in the period (or the
/// network is untrained), ERROR when inference fails, OK otherwise.
pub fn diagnostics_message(
    header: Header,
    context: &DiagnosticsContext,
    now: &StatsSnapshot,
    previous: Option<&StatsSnapshot>,
    untrained: bool,
) -> DiagnosticArray {
    let since = |reason| now.count(reason) - previous.map_or(0, |p| p.count(reason));
    let new_drops: u64 = DropReason::ALL.into_iter().map(since).sum();
    let failed = since(DropReason::InferenceFailed) > 0;
    let (level, message) = if failed {
        (
            DiagnosticStatus::ERROR as u8,
            "inference failing".to_string(),
        )
    } else if new_drops > 0 {
        (
            DiagnosticStatus::WARN as u8,
            format!("{new_drops} frames dropped in the last period"),
        )
    } else if untrained {
        (
            DiagnosticStatus::WARN as u8,
            "running an untrained model".to_string(),
        )
    } else {
        (DiagnosticStatus::OK as u8, "ok".to_string())
    };
    let mut values = vec![
        KeyValue {
            key: "device".into(),
            value: context.device_label.clone(),
        },
        KeyValue {
            key: "mode".into(),
            value: context.mode.clone(),
        },
        KeyValue {
            key: "segmentation_model".into(),
            value: context.model.clone(),
        },
    ];
    values.extend(
        now.key_values()
            .into_iter()
            .map(|(key, value)| KeyValue { key, value }),
    );
    DiagnosticArray {
        header,
        status: vec![DiagnosticStatus {
            level,
            name: format!("{}: pipeline", context.node_name),
            message,
            hardware_id: context.device_label.clone(),
            values,
        }],
    }
}
