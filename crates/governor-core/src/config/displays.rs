//! A policy file's `displays:`: how actions' requests read to approvers.

use serde_json::Value;

use super::ConfigError;
use super::raw::RawDisplay;
use crate::display::{Display, DisplayField};
use crate::selector::ActionSelector;

/// One `displays:` entry, checked.
#[derive(Debug, Clone)]
pub struct ActionDisplay {
    /// The actions it describes.
    pub actions: ActionSelector,
    /// How their requests read.
    pub display: Display,
}

/// Checks entry `i`, naming the key of any mistake.
pub(super) fn display(i: usize, raw: RawDisplay) -> Result<ActionDisplay, ConfigError> {
    let bad = |key: &str, what: String| ConfigError::new(format!("`displays[{i}].{key}`: {what}"));
    let actions = ActionSelector::new(raw.actions).map_err(|e| bad("actions", e.to_string()))?;
    let fields = raw
        .fields
        .into_iter()
        .enumerate()
        .map(|(n, f)| field(f).map_err(|e| bad(&format!("fields[{n}]"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let display = Display {
        title: raw.title,
        fields,
        on_approve: raw.on_approve,
    };
    display.check().map_err(|e| bad("title", e.to_string()))?;
    Ok(ActionDisplay { actions, display })
}

fn field(value: Value) -> Result<DisplayField, String> {
    match value {
        Value::String(name) if !name.is_empty() => Ok(DisplayField::new(name)),
        Value::Object(_) => serde_json::from_value::<DisplayField>(value)
            .map(|f| match f.currency {
                Some(c) => DisplayField {
                    currency: Some(c.to_ascii_uppercase()),
                    ..f
                },
                None => f,
            })
            .map_err(|e| format!("{e} (expected {{name, label, currency, unit}})")),
        other => Err(format!(
            "expected an argument name or {{name, label, currency, unit}}, not {other}"
        )),
    }
}
