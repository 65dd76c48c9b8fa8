//! cty types and their compact JSON form.
//!
//! The JSON form is what Terraform expects in schema attribute `type` fields
//! and what travels inside dynamic values: `"string"`, `["list","string"]`,
//! `["object",{"a":"number"}]`, and so on. Terraform 1.0.3 panics on a
//! malformed type, so the encoding is kept exact and compact.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    Bool,
    Number,
    String,
    /// cty's `DynamicPseudoType`: the concrete type travels with each value.
    Dynamic,
    List(Box<Type>),
    Set(Box<Type>),
    Map(Box<Type>),
    Object(BTreeMap<String, Type>),
    Tuple(Vec<Type>),
}

impl Type {
    pub fn list(element: Type) -> Type {
        Type::List(Box::new(element))
    }

    pub fn set(element: Type) -> Type {
        Type::Set(Box::new(element))
    }

    pub fn map(element: Type) -> Type {
        Type::Map(Box::new(element))
    }

    /// `Type::object([("a", Type::String), ("b", Type::Number)])`.
    pub fn object<K: Into<String>>(attrs: impl IntoIterator<Item = (K, Type)>) -> Type {
        Type::Object(attrs.into_iter().map(|(k, t)| (k.into(), t)).collect())
    }

    pub fn tuple(elements: impl IntoIterator<Item = Type>) -> Type {
        Type::Tuple(elements.into_iter().collect())
    }

    /// The compact JSON type form, as a JSON tree.
    pub fn to_json(&self) -> Json {
        fn kind(name: &str, arg: Json) -> Json {
            Json::Array(vec![Json::from(name), arg])
        }
        match self {
            Type::Bool => Json::from("bool"),
            Type::Number => Json::from("number"),
            Type::String => Json::from("string"),
            Type::Dynamic => Json::from("dynamic"),
            Type::List(t) => kind("list", t.to_json()),
            Type::Set(t) => kind("set", t.to_json()),
            Type::Map(t) => kind("map", t.to_json()),
            Type::Object(attrs) => kind(
                "object",
                Json::Object(
                    attrs
                        .iter()
                        .map(|(k, t)| (k.clone(), t.to_json()))
                        .collect(),
                ),
            ),
            Type::Tuple(elems) => kind(
                "tuple",
                Json::Array(elems.iter().map(Type::to_json).collect()),
            ),
        }
    }

    /// The compact JSON type form as bytes (no whitespace, object keys sorted).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising a serde_json::Value cannot fail: all keys are strings.
        serde_json::to_vec(&self.to_json()).expect("a JSON tree always serialises")
    }

    /// Parses the compact JSON type form.
    pub fn from_json(v: &Json) -> Result<Type, TypeError> {
        match v {
            Json::String(name) => match name.as_str() {
                "bool" => Ok(Type::Bool),
                "number" => Ok(Type::Number),
                "string" => Ok(Type::String),
                "dynamic" => Ok(Type::Dynamic),
                other => Err(TypeError::new(format!("unknown primitive type {other:?}"))),
            },
            Json::Array(parts) => {
                let (kind, arg) = match parts.as_slice() {
                    [Json::String(kind), arg, ..] => (kind.as_str(), arg),
                    _ => return Err(TypeError::new(format!("malformed type {v}"))),
                };
                // cty allows a third element on objects only: the list of
                // optional attributes (a type-constraint detail that concrete
                // values never need, so it is checked and ignored).
                let rest = &parts[2..];
                match (kind, rest) {
                    ("list", []) => Ok(Type::list(Type::from_json(arg)?)),
                    ("set", []) => Ok(Type::set(Type::from_json(arg)?)),
                    ("map", []) => Ok(Type::map(Type::from_json(arg)?)),
                    ("object", [] | [Json::Array(_)]) => {
                        let Json::Object(attrs) = arg else {
                            return Err(TypeError::new(format!(
                                "object type needs an attribute map, got {arg}"
                            )));
                        };
                        let attrs = attrs
                            .iter()
                            .map(|(k, t)| Ok((k.clone(), Type::from_json(t)?)))
                            .collect::<Result<_, TypeError>>()?;
                        Ok(Type::Object(attrs))
                    }
                    ("tuple", []) => {
                        let Json::Array(elems) = arg else {
                            return Err(TypeError::new(format!(
                                "tuple type needs an element list, got {arg}"
                            )));
                        };
                        Ok(Type::Tuple(
                            elems
                                .iter()
                                .map(Type::from_json)
                                .collect::<Result<_, _>>()?,
                        ))
                    }
                    _ => Err(TypeError::new(format!("malformed type {v}"))),
                }
            }
            _ => Err(TypeError::new(format!("malformed type {v}"))),
        }
    }

    /// Parses the compact JSON type form from bytes (as found in dynamic values).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Type, TypeError> {
        let json: Json = serde_json::from_slice(bytes)
            .map_err(|e| TypeError::new(format!("type is not valid JSON: {e}")))?;
        Type::from_json(&json)
    }

    /// Short name of the type's kind, for error messages.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Type::Bool => "bool",
            Type::Number => "number",
            Type::String => "string",
            Type::Dynamic => "dynamic",
            Type::List(_) => "list",
            Type::Set(_) => "set",
            Type::Map(_) => "map",
            Type::Object(_) => "object",
            Type::Tuple(_) => "tuple",
        }
    }
}

/// Displays the compact JSON form, e.g. `["list","string"]`.
impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

/// A JSON type description that is not a valid cty type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    message: String,
}

impl TypeError {
    fn new(message: String) -> Self {
        TypeError { message }
    }
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid type: {}", self.message)
    }
}

impl std::error::Error for TypeError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn compact(t: &Type) -> String {
        String::from_utf8(t.to_json_bytes()).unwrap()
    }

    #[test]
    fn primitives_encode_exactly() {
        assert_eq!(compact(&Type::String), r#""string""#);
        assert_eq!(compact(&Type::Number), r#""number""#);
        assert_eq!(compact(&Type::Bool), r#""bool""#);
        assert_eq!(compact(&Type::Dynamic), r#""dynamic""#);
    }

    #[test]
    fn collections_encode_exactly() {
        assert_eq!(compact(&Type::list(Type::String)), r#"["list","string"]"#);
        assert_eq!(compact(&Type::set(Type::Number)), r#"["set","number"]"#);
        assert_eq!(compact(&Type::map(Type::Bool)), r#"["map","bool"]"#);
        assert_eq!(
            compact(&Type::object([("a", Type::Number)])),
            r#"["object",{"a":"number"}]"#
        );
        assert_eq!(
            compact(&Type::tuple([Type::String, Type::Bool])),
            r#"["tuple",["string","bool"]]"#
        );
        assert_eq!(compact(&Type::object::<&str>([])), r#"["object",{}]"#);
        assert_eq!(compact(&Type::tuple([])), r#"["tuple",[]]"#);
    }

    #[test]
    fn nested_encodes_with_sorted_keys() {
        let t = Type::list(Type::object([
            ("port", Type::Number),
            ("host", Type::String),
            ("labels", Type::map(Type::String)),
            ("extra", Type::Dynamic),
        ]));
        assert_eq!(
            compact(&t),
            r#"["list",["object",{"extra":"dynamic","host":"string","labels":["map","string"],"port":"number"}]]"#
        );
        assert_eq!(t.to_string(), compact(&t));
    }

    #[test]
    fn json_round_trip() {
        let types = [
            Type::Bool,
            Type::Dynamic,
            Type::set(Type::list(Type::map(Type::Number))),
            Type::object([(
                "a",
                Type::tuple([Type::String, Type::object([("b", Type::Bool)])]),
            )]),
        ];
        for t in types {
            assert_eq!(Type::from_json(&t.to_json()).unwrap(), t);
            assert_eq!(Type::from_json_bytes(&t.to_json_bytes()).unwrap(), t);
        }
    }

    #[test]
    fn object_with_optional_attribute_list_is_accepted() {
        let json = serde_json::json!(["object", {"a": "string"}, ["a"]]);
        assert_eq!(
            Type::from_json(&json).unwrap(),
            Type::object([("a", Type::String)])
        );
    }

    #[test]
    fn malformed_types_are_rejected() {
        for bad in [
            r#""strin""#,
            r#"["list"]"#,
            r#"["list","string","x"]"#,
            r#"["lisst","string"]"#,
            r#"["object",["a"]]"#,
            r#"["tuple",{"a":"string"}]"#,
            r#"["map",["list"]]"#,
            r#"42"#,
            r#"null"#,
        ] {
            let err = Type::from_json_bytes(bad.as_bytes()).unwrap_err();
            assert!(err.to_string().starts_with("invalid type"), "{bad}: {err}");
        }
        assert!(Type::from_json_bytes(b"[\"list\",").is_err());
    }
}
