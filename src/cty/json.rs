//! cty values as JSON, the form Terraform stores resource state in.
//!
//! Its main use is UpgradeResourceState: the stored state may have been
//! written under an older schema, so decoding is forgiving where cty's own
//! JSON decoder is, and more so for objects: missing attributes become null
//! and attributes the schema no longer has are dropped.
//!
//! Numbers: serde_json is built without `arbitrary_precision`, so integers
//! are exact when they fit i64/u64 and other numbers go through f64 (numbers
//! beyond f64 range fail to parse). A float is taken as the decimal its
//! shortest text spells, as Terraform reads the `0.1` it wrote.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use super::error::CodecError as JsonError;
use super::error::Step;
use super::number::WireNumber;
use super::{Number, Type, Value};

/// Decodes JSON state of type `ty` (see the module docs for the leniencies).
pub fn decode_json(bytes: &[u8], ty: &Type) -> Result<Value, JsonError> {
    let json: Json =
        serde_json::from_slice(bytes).map_err(|e| JsonError::new(format!("invalid JSON: {e}")))?;
    from_json(&json, ty)
}

fn from_json(json: &Json, ty: &Type) -> Result<Value, JsonError> {
    if json.is_null() {
        return Ok(Value::Null);
    }
    match ty {
        // Primitives convert like cty's decoder (and its string conversions)
        // do, which helps state written when an attribute had another type.
        Type::Bool => match json {
            Json::Bool(b) => Ok(Value::Bool(*b)),
            Json::String(s) if s == "true" => Ok(Value::Bool(true)),
            Json::String(s) if s == "false" => Ok(Value::Bool(false)),
            other => Err(mismatch("bool", other)),
        },
        Type::Number => match json {
            Json::Number(n) => Ok(Value::Number(number_from_json(n)?)),
            Json::String(s) => Number::parse(s)
                .map(Value::Number)
                .ok_or_else(|| JsonError::new(format!("expected number, got string {s:?}"))),
            other => Err(mismatch("number", other)),
        },
        Type::String => match json {
            Json::String(s) => Ok(Value::String(s.clone())),
            Json::Number(n) => Ok(Value::String(number_from_json(n)?.to_string())),
            Json::Bool(b) => Ok(Value::String(b.to_string())),
            other => Err(mismatch("string", other)),
        },
        Type::List(elem) => elements(json, "list", |_| elem).map(Value::List),
        Type::Set(elem) => elements(json, "set", |_| elem).map(Value::Set),
        Type::Tuple(elems) => {
            let len = json.as_array().map_or(0, Vec::len);
            if json.is_array() && len != elems.len() {
                return Err(JsonError::new(format!(
                    "expected a tuple of {} elements, got {len}",
                    elems.len()
                )));
            }
            elements(json, "tuple", |i| &elems[i]).map(Value::Tuple)
        }
        Type::Map(elem) => {
            let Json::Object(entries) = json else {
                return Err(mismatch("map", json));
            };
            entries
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        from_json(v, elem).map_err(|e| e.within(Step::Key(k)))?,
                    ))
                })
                .collect::<Result<_, _>>()
                .map(Value::Map)
        }
        Type::Object(attrs) => {
            let Json::Object(entries) = json else {
                return Err(mismatch("object", json));
            };
            // Walk the current schema: attributes it lacks are dropped,
            // attributes the stored state lacks become null.
            attrs
                .iter()
                .map(|(name, attr_ty)| {
                    let value = match entries.get(name) {
                        Some(v) => from_json(v, attr_ty).map_err(|e| e.within(Step::Attr(name)))?,
                        None => Value::Null,
                    };
                    Ok((name.clone(), value))
                })
                .collect::<Result<_, _>>()
                .map(Value::Object)
        }
        Type::Dynamic => {
            let Json::Object(entries) = json else {
                return Err(mismatch(
                    "dynamic value ({\"value\": ..., \"type\": ...})",
                    json,
                ));
            };
            if let Some(key) = entries.keys().find(|k| *k != "value" && *k != "type") {
                return Err(JsonError::new(format!(
                    "invalid key {key:?} in dynamic value"
                )));
            }
            let (Some(type_json), Some(value)) = (entries.get("type"), entries.get("value")) else {
                return Err(JsonError::new(
                    "dynamic value needs both \"type\" and \"value\"",
                ));
            };
            let concrete = Type::from_json(type_json).map_err(|e| JsonError::new(e.to_string()))?;
            let value = from_json(value, &concrete)?;
            Ok(Value::Dynamic(concrete, Box::new(value)))
        }
    }
}

fn elements<'t>(
    json: &Json,
    expected: &str,
    elem_ty: impl Fn(usize) -> &'t Type,
) -> Result<Vec<Value>, JsonError> {
    let Json::Array(items) = json else {
        return Err(mismatch(expected, json));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| from_json(item, elem_ty(i)).map_err(|e| e.within(Step::Index(i))))
        .collect()
}

fn number_from_json(n: &serde_json::Number) -> Result<Number, JsonError> {
    if let Some(i) = n.as_i64() {
        return Ok(Number::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Ok(Number::from(u));
    }
    // The shortest text of the f64 is the decimal the JSON spelled (up to
    // f64 precision); read it as that decimal, not as the binary fraction.
    Number::parse(&n.to_string()).ok_or_else(|| JsonError::new(format!("invalid number {n}")))
}

fn mismatch(expected: &str, found: &Json) -> JsonError {
    let kind = match found {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    };
    JsonError::new(format!("expected {expected}, got {kind}"))
}

/// Encodes a wholly known value of type `ty` as cty JSON. Unknowns are an
/// error; numbers that are neither integers nor f64 are written as decimal
/// strings (which [`decode_json`], like Terraform, reads back exactly).
pub fn encode_json(value: &Value, ty: &Type) -> Result<Json, JsonError> {
    Ok(match (value, ty) {
        (Value::Null, _) => Json::Null,
        (Value::Unknown, _) => {
            return Err(JsonError::new("unknown values cannot be written as JSON"))
        }
        (Value::Bool(b), Type::Bool) => Json::Bool(*b),
        (Value::Number(n), Type::Number) => number_to_json(n)?,
        (Value::String(s), Type::String) => Json::String(s.clone()),
        (Value::List(elems), Type::List(elem_ty)) | (Value::Set(elems), Type::Set(elem_ty)) => {
            Json::Array(
                elems
                    .iter()
                    .enumerate()
                    .map(|(i, e)| encode_json(e, elem_ty).map_err(|err| err.within(Step::Index(i))))
                    .collect::<Result<_, _>>()?,
            )
        }
        (Value::Tuple(elems), Type::Tuple(elem_tys)) => {
            if elems.len() != elem_tys.len() {
                return Err(JsonError::new(format!(
                    "expected a tuple of {} elements, got {}",
                    elem_tys.len(),
                    elems.len()
                )));
            }
            Json::Array(
                elems
                    .iter()
                    .zip(elem_tys)
                    .enumerate()
                    .map(|(i, (e, t))| encode_json(e, t).map_err(|err| err.within(Step::Index(i))))
                    .collect::<Result<_, _>>()?,
            )
        }
        (Value::Map(map), Type::Map(elem_ty)) => Json::Object(
            map.iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        encode_json(v, elem_ty).map_err(|e| e.within(Step::Key(k)))?,
                    ))
                })
                .collect::<Result<Map<_, _>, JsonError>>()?,
        ),
        (Value::Object(object), Type::Object(attrs)) => Json::Object(encode_object(object, attrs)?),
        (Value::Dynamic(concrete, inner), Type::Dynamic) => {
            let mut wrapper = Map::new();
            wrapper.insert("type".into(), concrete.to_json());
            wrapper.insert("value".into(), encode_json(inner, concrete)?);
            Json::Object(wrapper)
        }
        (Value::Dynamic(..), _) => {
            return Err(JsonError::new(format!(
                "expected {}, got a dynamic value",
                ty.kind_name()
            )));
        }
        (_, Type::Dynamic) => {
            return Err(JsonError::new(
                "expected a dynamic value (with its concrete type)",
            ))
        }
        (_, _) => return Err(JsonError::new(format!("expected {}", ty.kind_name()))),
    })
}

/// Objects must have exactly the schema's attributes, as in msgpack.
fn encode_object(
    object: &BTreeMap<String, Value>,
    attrs: &BTreeMap<String, Type>,
) -> Result<Map<String, Json>, JsonError> {
    if let Some(extra) = object.keys().find(|k| !attrs.contains_key(*k)) {
        return Err(JsonError::new(format!("unsupported attribute {extra:?}")));
    }
    attrs
        .iter()
        .map(|(name, attr_ty)| {
            let attr = object
                .get(name)
                .ok_or_else(|| JsonError::new(format!("missing attribute {name:?}")))?;
            Ok((
                name.clone(),
                encode_json(attr, attr_ty).map_err(|e| e.within(Step::Attr(name)))?,
            ))
        })
        .collect()
}

fn number_to_json(n: &Number) -> Result<Json, JsonError> {
    if let Some(i) = n.as_i64() {
        return Ok(Json::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Ok(Json::from(u));
    }
    match n.wire_form() {
        WireNumber::Float(f) if f.is_finite() => Ok(Json::from(f)),
        WireNumber::Float(_) => Err(JsonError::new(format!("{n} cannot be written as JSON"))),
        WireNumber::Int(i) => Ok(Json::from(i)),
        WireNumber::Text(text) => Ok(Json::String(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj<const N: usize>(attrs: [(&str, Value); N]) -> Value {
        Value::Object(attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn decode(json: Json, ty: &Type) -> Result<Value, JsonError> {
        decode_json(&serde_json::to_vec(&json).unwrap(), ty)
    }

    #[test]
    fn upgrade_drops_removed_and_nulls_missing_attributes() {
        // Stored under an old schema with "legacy"; the new one adds "port"
        // and, nested, "tls" in each worker.
        let stored = br#"{
            "name": "coord",
            "legacy": "gone",
            "workers": [{"host": "w1", "old": 1}]
        }"#;
        let ty = Type::object([
            ("name", Type::String),
            ("port", Type::Number),
            (
                "workers",
                Type::list(Type::object([("host", Type::String), ("tls", Type::Bool)])),
            ),
        ]);
        let value = decode_json(stored, &ty).unwrap();
        assert_eq!(
            value,
            obj([
                ("name", Value::string("coord")),
                ("port", Value::Null),
                (
                    "workers",
                    Value::List(vec![obj([
                        ("host", Value::string("w1")),
                        ("tls", Value::Null)
                    ])])
                ),
            ])
        );
        // The result is a valid value of the new type.
        super::super::encode_msgpack(&value, &ty).unwrap();
    }

    #[test]
    fn round_trip_every_type() {
        let ty = Type::object([
            ("b", Type::Bool),
            ("n", Type::Number),
            ("s", Type::String),
            ("l", Type::list(Type::Number)),
            ("set", Type::set(Type::String)),
            ("m", Type::map(Type::object([("x", Type::Number)]))),
            ("t", Type::tuple([Type::String, Type::Bool])),
            ("d", Type::Dynamic),
            ("nothing", Type::String),
        ]);
        let value = obj([
            ("b", Value::Bool(true)),
            ("n", Value::Number(Number::from(0.25))),
            ("s", Value::string("x")),
            (
                "l",
                Value::List(vec![
                    Value::int(1),
                    Value::Null,
                    Value::Number(Number::from(u64::MAX)),
                ]),
            ),
            ("set", Value::Set(vec![Value::string("a")])),
            (
                "m",
                Value::Map([("k".to_string(), obj([("x", Value::Null)]))].into()),
            ),
            (
                "t",
                Value::Tuple(vec![Value::string("y"), Value::Bool(false)]),
            ),
            (
                "d",
                Value::Dynamic(
                    Type::list(Type::String),
                    Box::new(Value::List(vec![Value::string("z")])),
                ),
            ),
            ("nothing", Value::Null),
        ]);
        let json = encode_json(&value, &ty).unwrap();
        assert_eq!(
            json["d"],
            json!({"type": ["list", "string"], "value": ["z"]})
        );
        assert_eq!(json["l"], json!([1, null, u64::MAX]));
        assert_eq!(decode(json, &ty).unwrap(), value);
    }

    #[test]
    fn numbers() {
        let n = |j: Json| decode(j, &Type::Number).unwrap();
        assert_eq!(n(json!(5)), Value::int(5));
        assert_eq!(n(json!(5.0)), Value::int(5));
        assert_eq!(n(json!(u64::MAX)), Value::Number(Number::from(u64::MAX)));
        // JSON 0.1 means the decimal one tenth, as Terraform reads it.
        assert_eq!(n(json!(0.1)), Value::Number(Number::parse("0.1").unwrap()));
        assert_eq!(
            n(json!("1e400")),
            Value::Number(Number::parse("1e400").unwrap())
        );
        assert_eq!(
            decode_json(b"1e20", &Type::Number).unwrap(),
            Value::Number(Number::from(1e20))
        );
        // Exact decimals beyond f64 survive an encode/decode as strings.
        let big = Value::Number(Number::parse("1e400").unwrap());
        let json = encode_json(&big, &Type::Number).unwrap();
        assert!(json.is_string());
        assert_eq!(decode(json, &Type::Number).unwrap(), big);
        assert!(encode_json(&Value::Number(Number::from(f64::INFINITY)), &Type::Number).is_err());
    }

    #[test]
    fn primitives_convert_like_cty() {
        assert_eq!(
            decode(json!(42), &Type::String).unwrap(),
            Value::string("42")
        );
        assert_eq!(
            decode(json!(true), &Type::String).unwrap(),
            Value::string("true")
        );
        assert_eq!(
            decode(json!("false"), &Type::Bool).unwrap(),
            Value::Bool(false)
        );
        assert_eq!(decode(json!("7"), &Type::Number).unwrap(), Value::int(7));
        assert!(decode(json!("yes"), &Type::Bool).is_err());
        assert!(decode(json!([1]), &Type::String).is_err());
    }

    #[test]
    fn errors_name_the_path() {
        let ty = Type::object([(
            "workers",
            Type::list(Type::object([("port", Type::Number)])),
        )]);
        let err = decode(json!({"workers": [{"port": 1}, {"port": "x"}]}), &ty).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#".workers[1].port: expected number, got string "x""#
        );
        let err = decode(json!({"workers": {}}), &ty).unwrap_err();
        assert_eq!(err.to_string(), ".workers: expected list, got object");
        assert!(decode(json!(["a"]), &Type::tuple([Type::String, Type::String])).is_err());
        assert!(decode_json(b"{} x", &ty).is_err());
        assert!(decode_json(b"{", &ty).is_err());
    }

    #[test]
    fn dynamic_values() {
        let ty = Type::Dynamic;
        assert_eq!(decode(json!(null), &ty).unwrap(), Value::Null);
        assert_eq!(
            decode(json!({"value": null, "type": "string"}), &ty).unwrap(),
            Value::Dynamic(Type::String, Box::new(Value::Null))
        );
        assert!(decode(json!({"value": 1}), &ty).is_err());
        assert!(decode(json!({"value": 1, "type": "number", "x": 2}), &ty).is_err());
        assert!(decode(json!({"value": 1, "type": "nope"}), &ty).is_err());
        assert!(decode(json!("bare"), &ty).is_err());
        assert!(encode_json(&Value::string("bare"), &ty).is_err());
    }

    #[test]
    fn unknowns_and_mismatches_do_not_encode() {
        let ty = Type::object([("a", Type::String)]);
        let err = encode_json(&obj([("a", Value::Unknown)]), &ty).unwrap_err();
        assert_eq!(
            err.to_string(),
            ".a: unknown values cannot be written as JSON"
        );
        assert!(encode_json(&obj([]), &ty).is_err());
        assert!(encode_json(&obj([("a", Value::Null), ("b", Value::Null)]), &ty).is_err());
        assert!(encode_json(&Value::int(1), &Type::String).is_err());
    }
}
