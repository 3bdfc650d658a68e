//! Conversions between the wire's well-known types and what the rest of the code
//! works with: `google.protobuf.Struct` / `Value` ↔ `serde_json::Value` (the
//! `data` fields are stored and served as plain JSON) and
//! `google.protobuf.Timestamp` ↔ unix milliseconds (how times are stored).

use pbjson_types::{value::Kind, ListValue, Struct, Timestamp, Value};
use serde_json::{Map, Number, Value as Json};

/// Largest integer an `f64` holds exactly (2^53).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// A JSON value that does not fit where it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A `Struct` (a `data` or `payload` field) must be a JSON object.
    #[error("expected a JSON object, found {found}")]
    NotAnObject {
        /// What was given instead: "null", "a boolean", "a number", "a string" or "an array".
        found: &'static str,
    },
}

/// Converts a JSON object to a `Struct`; any other JSON value is an error.
/// Numbers become `f64` (integers beyond ±2^53 lose precision).
pub fn json_to_struct(json: &Json) -> Result<Struct, ConvertError> {
    match json {
        Json::Object(map) => Ok(map_to_struct(map)),
        other => Err(ConvertError::NotAnObject {
            found: describe(other),
        }),
    }
}

/// Converts a `Struct` to a JSON object (see [`value_to_json`] for numbers).
pub fn struct_to_json(s: &Struct) -> Json {
    Json::Object(
        s.fields
            .iter()
            .map(|(key, value)| (key.clone(), value_to_json(value)))
            .collect(),
    )
}

/// Converts any JSON value to a `google.protobuf.Value`; numbers become `f64`.
pub fn json_to_value(json: &Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        // `as_f64` is always `Some` without serde_json's arbitrary_precision.
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(map_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

/// Converts a `google.protobuf.Value` to JSON. Whole numbers within ±2^53 come
/// back as JSON integers, so `{"n": 3}` round-trips as written; NaN and the
/// infinities (which JSON cannot hold) and an unset value become `null`.
pub fn value_to_json(value: &Value) -> Json {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(n)) => number_to_json(*n),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(list)) => Json::Array(list.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => struct_to_json(s),
    }
}

/// The timestamp of a unix time in milliseconds.
pub fn millis_to_timestamp(millis: i64) -> Timestamp {
    Timestamp {
        seconds: millis.div_euclid(1000),
        // Always in 0..1_000_000_000, so the cast cannot truncate.
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// The unix time in milliseconds of a timestamp (sub-millisecond precision is
/// truncated towards the past; out-of-range values saturate).
pub fn timestamp_to_millis(ts: &Timestamp) -> i64 {
    let nanos = i64::from(ts.nanos);
    ts.seconds
        .saturating_add(nanos.div_euclid(1_000_000_000))
        .saturating_mul(1000)
        .saturating_add(nanos.rem_euclid(1_000_000_000) / 1_000_000)
}

fn map_to_struct(map: &Map<String, Json>) -> Struct {
    map.iter()
        .map(|(key, value)| (key.clone(), json_to_value(value)))
        .collect()
}

fn number_to_json(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        // Exact: the value is a whole number well within i64.
        return Json::Number(Number::from(n as i64));
    }
    Number::from_f64(n).map_or(Json::Null, Json::Number)
}

fn describe(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_round_trips() {
        let data = json!({
            "n": 3,
            "neg": -12,
            "pi": 1.5,
            "flag": true,
            "none": null,
            "name": "café ☕",
            "list": [1, "two", [3.25], {"four": 4}],
            "nested": {"deeper": {"empty": {}}, "empty_list": []},
        });
        let s = json_to_struct(&data).unwrap();
        assert_eq!(s.fields["n"], Value::from(3.0));
        assert_eq!(s.fields["name"], Value::from("café ☕"));
        assert_eq!(struct_to_json(&s), data);
    }

    #[test]
    fn struct_matches_the_proto3_json_mapping() {
        // The Struct built here serializes to the same JSON it came from.
        let data = json!({"a": [1.5, "x", null, {"b": false}]});
        let s = json_to_struct(&data).unwrap();
        assert_eq!(serde_json::to_value(&s).unwrap(), data);
    }

    #[test]
    fn non_objects_are_rejected() {
        for (json, found) in [
            (json!(null), "null"),
            (json!(true), "a boolean"),
            (json!(1), "a number"),
            (json!("s"), "a string"),
            (json!([1]), "an array"),
        ] {
            let err = json_to_struct(&json).unwrap_err();
            assert_eq!(err, ConvertError::NotAnObject { found });
            assert_eq!(
                err.to_string(),
                format!("expected a JSON object, found {found}")
            );
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(value_to_json(&Value::from(2.0)), json!(2));
        assert_eq!(value_to_json(&Value::from(-0.0)), json!(0));
        assert_eq!(value_to_json(&Value::from(0.1)), json!(0.1));
        assert_eq!(value_to_json(&Value::from(1e300)), json!(1e300));
        assert_eq!(value_to_json(&Value::from(f64::NAN)), Json::Null);
        assert_eq!(value_to_json(&Value::from(f64::INFINITY)), Json::Null);
        assert_eq!(value_to_json(&Value { kind: None }), Json::Null);
        assert_eq!(
            json_to_value(&json!(u64::MAX)),
            Value::from(u64::MAX as f64)
        );
    }

    #[test]
    fn timestamps() {
        for millis in [0, 1, 999, 1000, 1_747_215_000_123, -1, -999, -1000, -1001] {
            let ts = millis_to_timestamp(millis);
            assert!((0..1_000_000_000).contains(&ts.nanos), "{ts:?}");
            assert_eq!(timestamp_to_millis(&ts), millis);
        }
        assert_eq!(
            millis_to_timestamp(-1),
            Timestamp {
                seconds: -1,
                nanos: 999_000_000
            }
        );
        // Sub-millisecond precision truncates towards the past.
        let ts = Timestamp {
            seconds: 10,
            nanos: 1_999_999,
        };
        assert_eq!(timestamp_to_millis(&ts), 10_001);
        // Unnormalized nanos still give the right instant.
        let ts = Timestamp {
            seconds: 10,
            nanos: -1_000_000,
        };
        assert_eq!(timestamp_to_millis(&ts), 9_999);
        let ts = Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(timestamp_to_millis(&ts), i64::MAX);
    }
}
