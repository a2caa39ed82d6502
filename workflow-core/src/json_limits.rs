//! How deep stored JSON may nest, checked where values come in, so that everything stored
//! reads back.
//!
//! Every stored record is read with `serde_json`, which refuses JSON nested more than
//! [`READER_DEPTH`] levels deep (its guard against a stack overflow). A user value (a
//! workflow's input or result, an activity's input, result or heartbeat details, a child's
//! input) is stored inside envelopes: a snapshot keeps an activity's result as
//! `{"instance":{"ops":{"3":{"status":{"Resolved":{"Ok": value}}}}}}`, six levels, and a
//! parallel block or a compensation handler adds a few more. So a user value may nest at
//! most [`MAX_VALUE_DEPTH`] levels, half of what the reader takes, and a value deeper than
//! that is refused where it enters, with nothing stored:
//! - a workflow's input, by the client: [`ClientError::TooDeep`](crate::ClientError::TooDeep);
//! - an activity's or a child's input, by the step: the call resolves at once with a
//!   [`WorkflowError::Decode`](crate::WorkflowError::Decode) and nothing is scheduled;
//! - an activity's result or heartbeat details, by the activity's context: a non-retryable
//!   failure of the attempt;
//! - a workflow's result: the workflow fails with a message saying so.
//!
//! And a step never commits a snapshot deeper than [`READER_DEPTH`] (a workflow's own locals
//! could nest that deep): the workflow is marked stuck instead, with its last good state.

use serde_json::Value;

/// The deepest nesting `serde_json` reads back: its recursion limit.
pub const READER_DEPTH: usize = 128;

/// The deepest nesting a user value may have (see the module documentation).
pub const MAX_VALUE_DEPTH: usize = 64;

/// How deep `value` nests: 0 for a scalar, 1 for `[]` or `[1]`, 2 for `[[1]]`.
pub fn value_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((node, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match node {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

/// How deep the JSON text nests, counted as [`value_depth`] counts it, without parsing it
/// (brackets inside strings do not count).
pub fn text_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// `Err` with a message naming `what` if `value` nests deeper than [`MAX_VALUE_DEPTH`].
pub fn check_value(what: &str, value: &Value) -> Result<(), String> {
    let depth = value_depth(value);
    if depth > MAX_VALUE_DEPTH {
        return Err(too_deep(what, depth));
    }
    Ok(())
}

/// `value` as JSON, if it serializes and nests at most [`MAX_VALUE_DEPTH`] levels; the error
/// says which of the two failed.
pub(crate) fn to_stored_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value, String> {
    let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
    let depth = value_depth(&value);
    if depth > MAX_VALUE_DEPTH {
        return Err(too_deep("it", depth));
    }
    Ok(value)
}

/// The message for a value of `depth` levels.
pub(crate) fn too_deep(what: &str, depth: usize) -> String {
    format!(
        "{what} nests {depth} levels deep, more than the {MAX_VALUE_DEPTH} a stored value may \
         (so that every record reads back); flatten it or store it elsewhere and pass a reference"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        (0..depth).fold(json!(1), |inner, _| json!([inner]))
    }

    #[test]
    fn depth_counts_levels_of_arrays_and_objects_alike() {
        assert_eq!(value_depth(&json!(1)), 0);
        assert_eq!(value_depth(&json!([])), 1);
        assert_eq!(value_depth(&json!({"a": [1, {"b": "[[["}]})), 3);
        assert_eq!(value_depth(&nested(200)), 200);
        for v in [json!(1), json!({"a": [1, {"b": "[[[\\\"{"}]}), nested(150)] {
            assert_eq!(text_depth(&v.to_string()), value_depth(&v), "{v}");
        }
    }

    #[test]
    fn the_limit_leaves_room_for_the_envelopes_a_value_is_stored_in() {
        assert!(check_value("x", &nested(MAX_VALUE_DEPTH)).is_ok());
        let err =
            check_value("the input of workflow `w`", &nested(MAX_VALUE_DEPTH + 1)).unwrap_err();
        assert!(
            err.contains("the input of workflow `w` nests 65 levels"),
            "{err}"
        );
        // A value at the limit, in the deepest envelope the engine uses, still reads back.
        let stored = json!({"instance": {"ops": {"3": {"status": {"Resolved": {"Ok":
            nested(MAX_VALUE_DEPTH)}}}}}});
        let text = stored.to_string();
        assert!(serde_json::from_str::<Value>(&text).is_ok());
        // And the reader's limit is what this module says it is.
        assert!(serde_json::from_str::<Value>(&nested(READER_DEPTH - 1).to_string()).is_ok());
        assert!(serde_json::from_str::<Value>(&nested(READER_DEPTH + 1).to_string()).is_err());
    }
}
