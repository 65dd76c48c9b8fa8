//! Terraform's value system (cty) as the plugin protocol carries it.
//!
//! A [`Value`] is always one of: null, unknown, or a known value of its type.
//! Values do not carry their type; every codec call takes the schema [`Type`]
//! because the wire forms (msgpack and JSON) are only meaningful against it.

mod error;
mod json;
mod msgpack;
mod number;
mod types;

pub use error::CodecError;
/// Errors of [`decode_json`] / [`encode_json`].
pub type JsonError = CodecError;
/// Errors of [`decode_msgpack`] / [`encode_msgpack`].
pub type MsgpackError = CodecError;
pub use json::{decode_json, encode_json};
pub use msgpack::{decode_msgpack, encode_msgpack};
pub use number::Number;
pub use types::{Type, TypeError};

use std::collections::BTreeMap;

/// A cty value. Collections hold their elements in wire order; sets are kept
/// as lists of distinct elements (order is not significant for equality of sets
/// in Terraform, but the provider never needs to compare sets of unknowns).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Unknown,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    Set(Vec<Value>),
    Tuple(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Object(BTreeMap<String, Value>),
    /// A value of type `dynamic`: the concrete type travels with the value.
    Dynamic(Type, Box<Value>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Unknown)
    }

    /// True when this value and everything inside it is known.
    pub fn is_wholly_known(&self) -> bool {
        match self {
            Value::Unknown => false,
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
                v.iter().all(Value::is_wholly_known)
            }
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            Value::Dynamic(_, v) => v.is_wholly_known(),
            _ => true,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut BTreeMap<String, Value>> {
        match self {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// Elements of a list, set or tuple.
    pub fn as_elements(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// Attribute of an object; `Null` when this is not an object or lacks it.
    pub fn attr(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.as_object().and_then(|m| m.get(name)).unwrap_or(&NULL)
    }

    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    pub fn int(i: i64) -> Value {
        Value::Number(Number::from(i))
    }

    /// `Some(s)` -> string, `None` -> null.
    pub fn opt_string(s: Option<impl Into<String>>) -> Value {
        s.map(|s| Value::String(s.into())).unwrap_or(Value::Null)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::int(i)
    }
}
