//! [`Snapshot`]: a workflow's stored state as JSON text.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A workflow's stored state, `{"machine": <machine state>, "instance": <runtime state>}`,
/// kept as the JSON text it was serialized to.
///
/// The engine writes one per step, so it is built straight from the machine and runtime
/// state into text (no intermediate `serde_json::Value` tree), a store keeps the text
/// (SQLite as a column, [`MemoryStore`](crate::MemoryStore) as is), and a step decodes it
/// straight into the machine's types.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Snapshot(Box<RawValue>);

impl Snapshot {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Serializes `value`.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Snapshot, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Snapshot)
    }

    /// Checks that `text` is JSON and keeps it.
    pub fn from_json_text(text: String) -> Result<Snapshot, serde_json::Error> {
        RawValue::from_string(text).map(Snapshot)
    }

    /// Decodes the snapshot as a `T`.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.as_str())
    }

    /// JSON `null`: what a store returns in place of a snapshot the caller said it does not
    /// need ([`Store::load_for_step`](crate::Store::load_for_step)).
    pub fn null() -> Snapshot {
        Snapshot(RawValue::NULL.to_owned())
    }

    /// Whether this is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.as_str() == "null"
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot::null()
    }
}

impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&serde_json::Value> for Snapshot {
    fn from(value: &serde_json::Value) -> Self {
        // A `Value` always serializes.
        Snapshot::of(value).unwrap_or_default()
    }
}

impl From<serde_json::Value> for Snapshot {
    fn from(value: serde_json::Value) -> Self {
        Snapshot::from(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_compares_by_text() {
        let s = Snapshot::of(&serde_json::json!({"machine": "Start", "n": 1.5})).unwrap();
        assert_eq!(s.as_str(), r#"{"machine":"Start","n":1.5}"#);
        let back: Snapshot = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let v: serde_json::Value = s.decode().unwrap();
        assert_eq!(v["machine"], "Start");
        assert!(Snapshot::null().is_null());
        assert!(Snapshot::from_json_text("{oops".into()).is_err());
    }
}
