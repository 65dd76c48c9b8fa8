//! cty values over msgpack, as the plugin protocol carries them.
//!
//! Wire rules (see the plugin-protocol notes):
//! - nil at any depth is null;
//! - any extension is an unknown (Terraform 1.0.3 writes fixext1 type 0,
//!   newer versions type 12 carrying refinements); unknowns are written as
//!   `d4 00 00`;
//! - objects are maps with exactly the schema's attributes;
//! - numbers are ints, floats, or decimal strings;
//! - dynamic values are `[bin(JSON type), value]`.

use std::collections::BTreeMap;
use std::convert::Infallible;

use rmp::encode::{self, ByteBuf, ValueWriteError};
use rmp::Marker;

use super::error::CodecError as MsgpackError;
use super::error::Step;
use super::number::WireNumber;
use super::{Number, Type, Value};

/// Encoding of an unknown value: fixext1, type 0, one zero byte.
const UNKNOWN: [u8; 3] = [0xd4, 0x00, 0x00];

// ---------------------------------------------------------------- decoding

/// Decodes a msgpack value of type `ty`. The whole input must be one value.
pub fn decode_msgpack(bytes: &[u8], ty: &Type) -> Result<Value, MsgpackError> {
    let mut reader = Reader { bytes, pos: 0 };
    let value = reader.value(ty)?;
    if reader.pos != bytes.len() {
        return Err(MsgpackError::new(format!(
            "{} trailing bytes after the value",
            bytes.len() - reader.pos
        )));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| MsgpackError::new("unexpected end of msgpack input"))?;
        let data = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(data)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MsgpackError> {
        Ok(self
            .take(N)?
            .try_into()
            .expect("take returns exactly N bytes"))
    }

    fn u8(&mut self) -> Result<u8, MsgpackError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, MsgpackError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, MsgpackError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, MsgpackError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn marker(&mut self) -> Result<Marker, MsgpackError> {
        Ok(Marker::from_u8(self.u8()?))
    }

    /// Reads a value whose marker has not been consumed yet.
    fn value(&mut self, ty: &Type) -> Result<Value, MsgpackError> {
        let marker = self.marker()?;
        if let Some(len) = self.ext_len(marker)? {
            // Whatever the extension (type 0, refinements in type 12, ...),
            // it stands for an unknown value; skip its type byte and payload.
            self.take(1 + len)?;
            return Ok(Value::Unknown);
        }
        if marker == Marker::Null {
            return Ok(Value::Null);
        }
        match ty {
            Type::Bool => match marker {
                Marker::True => Ok(Value::Bool(true)),
                Marker::False => Ok(Value::Bool(false)),
                other => Err(mismatch("bool", other)),
            },
            Type::Number => self.number(marker).map(Value::Number),
            Type::String => self.string(marker, "string").map(Value::String),
            Type::List(elem) => self.elements(marker, "list", |_| elem).map(Value::List),
            Type::Set(elem) => self.elements(marker, "set", |_| elem).map(Value::Set),
            Type::Tuple(elems) => {
                let len = self.array_len(marker, "tuple")?;
                if len != elems.len() {
                    return Err(MsgpackError::new(format!(
                        "expected a tuple of {} elements, got {len}",
                        elems.len()
                    )));
                }
                self.elements_of_len(len, |i| &elems[i]).map(Value::Tuple)
            }
            Type::Map(elem) => {
                let len = self.map_len(marker, "map")?;
                let mut map = BTreeMap::new();
                for _ in 0..len {
                    let key = self.key()?;
                    let value = self.value(elem).map_err(|e| e.within(Step::Key(&key)))?;
                    if map.contains_key(&key) {
                        return Err(MsgpackError::new(format!("duplicate map key {key:?}")));
                    }
                    map.insert(key, value);
                }
                Ok(Value::Map(map))
            }
            Type::Object(attrs) => {
                let len = self.map_len(marker, "object")?;
                let mut object = BTreeMap::new();
                for _ in 0..len {
                    let key = self.key()?;
                    let Some(attr_ty) = attrs.get(&key) else {
                        return Err(MsgpackError::new(format!("unsupported attribute {key:?}")));
                    };
                    let value = self
                        .value(attr_ty)
                        .map_err(|e| e.within(Step::Attr(&key)))?;
                    if object.contains_key(&key) {
                        return Err(MsgpackError::new(format!("duplicate attribute {key:?}")));
                    }
                    object.insert(key, value);
                }
                // Present keys were checked above; now the absent ones.
                if let Some(missing) = attrs.keys().find(|k| !object.contains_key(*k)) {
                    return Err(MsgpackError::new(format!("missing attribute {missing:?}")));
                }
                Ok(Value::Object(object))
            }
            Type::Dynamic => {
                let len = self.array_len(marker, "dynamic value ([type, value])")?;
                if len != 2 {
                    return Err(MsgpackError::new(format!(
                        "a dynamic value must be a [type, value] array, got {len} elements"
                    )));
                }
                let type_marker = self.marker()?;
                let type_json =
                    self.bytes_or_str(type_marker, "dynamic value type (JSON bytes)")?;
                let concrete = Type::from_json_bytes(type_json)
                    .map_err(|e| MsgpackError::new(e.to_string()))?;
                let value = self.value(&concrete)?;
                Ok(Value::Dynamic(concrete, Box::new(value)))
            }
        }
    }

    /// For an extension marker, reads its length field and returns the
    /// payload length (excluding the type byte).
    fn ext_len(&mut self, marker: Marker) -> Result<Option<usize>, MsgpackError> {
        Ok(Some(match marker {
            Marker::FixExt1 => 1,
            Marker::FixExt2 => 2,
            Marker::FixExt4 => 4,
            Marker::FixExt8 => 8,
            Marker::FixExt16 => 16,
            Marker::Ext8 => self.u8()?.into(),
            Marker::Ext16 => self.u16()?.into(),
            Marker::Ext32 => self.u32()? as usize,
            _ => return Ok(None),
        }))
    }

    fn number(&mut self, marker: Marker) -> Result<Number, MsgpackError> {
        let number = match marker {
            Marker::FixPos(n) => Number::from(i64::from(n)),
            Marker::FixNeg(n) => Number::from(i64::from(n)),
            Marker::U8 => Number::from(i64::from(self.u8()?)),
            Marker::U16 => Number::from(i64::from(self.u16()?)),
            Marker::U32 => Number::from(i64::from(self.u32()?)),
            Marker::U64 => Number::from(self.u64()?),
            Marker::I8 => Number::from(i64::from(self.u8()? as i8)),
            Marker::I16 => Number::from(i64::from(self.u16()? as i16)),
            Marker::I32 => Number::from(i64::from(self.u32()? as i32)),
            Marker::I64 => Number::from(self.u64()? as i64),
            Marker::F32 => Number::from(f64::from(f32::from_bits(self.u32()?))),
            Marker::F64 => Number::from(f64::from_bits(self.u64()?)),
            // Numbers beyond int and float range travel as decimal text.
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                let text = self.string(marker, "number")?;
                return Number::parse(&text).ok_or_else(|| {
                    MsgpackError::new(format!("expected number, got string {text:?}"))
                });
            }
            other => return Err(mismatch("number", other)),
        };
        if number.is_nan() {
            return Err(MsgpackError::new("NaN is not a valid number"));
        }
        Ok(number)
    }

    /// A string (str, or bin holding UTF-8 as Terraform's decoder also accepts).
    fn string(&mut self, marker: Marker, expected: &str) -> Result<String, MsgpackError> {
        let bytes = self.bytes_or_str(marker, expected)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| MsgpackError::new("string is not valid UTF-8"))
    }

    fn bytes_or_str(&mut self, marker: Marker, expected: &str) -> Result<&'a [u8], MsgpackError> {
        let len = match marker {
            Marker::FixStr(n) => n.into(),
            Marker::Str8 | Marker::Bin8 => self.u8()?.into(),
            Marker::Str16 | Marker::Bin16 => self.u16()?.into(),
            Marker::Str32 | Marker::Bin32 => self.u32()? as usize,
            other => return Err(mismatch(expected, other)),
        };
        self.take(len)
    }

    fn key(&mut self) -> Result<String, MsgpackError> {
        let marker = self.marker()?;
        self.string(marker, "string map key")
    }

    fn array_len(&mut self, marker: Marker, expected: &str) -> Result<usize, MsgpackError> {
        match marker {
            Marker::FixArray(n) => Ok(n.into()),
            Marker::Array16 => Ok(self.u16()?.into()),
            Marker::Array32 => Ok(self.u32()? as usize),
            other => Err(mismatch(expected, other)),
        }
    }

    fn map_len(&mut self, marker: Marker, expected: &str) -> Result<usize, MsgpackError> {
        match marker {
            Marker::FixMap(n) => Ok(n.into()),
            Marker::Map16 => Ok(self.u16()?.into()),
            Marker::Map32 => Ok(self.u32()? as usize),
            other => Err(mismatch(expected, other)),
        }
    }

    fn elements<'t>(
        &mut self,
        marker: Marker,
        expected: &str,
        elem_ty: impl Fn(usize) -> &'t Type,
    ) -> Result<Vec<Value>, MsgpackError> {
        let len = self.array_len(marker, expected)?;
        self.elements_of_len(len, elem_ty)
    }

    fn elements_of_len<'t>(
        &mut self,
        len: usize,
        elem_ty: impl Fn(usize) -> &'t Type,
    ) -> Result<Vec<Value>, MsgpackError> {
        // Every element takes at least one byte: bound the allocation by the
        // input left, not by a length field an attacker controls.
        let mut out = Vec::with_capacity(len.min(self.bytes.len() - self.pos));
        for i in 0..len {
            out.push(
                self.value(elem_ty(i))
                    .map_err(|e| e.within(Step::Index(i)))?,
            );
        }
        Ok(out)
    }
}

fn mismatch(expected: &str, found: Marker) -> MsgpackError {
    MsgpackError::new(format!("expected {expected}, got {}", marker_kind(found)))
}

fn marker_kind(marker: Marker) -> &'static str {
    match marker {
        Marker::Null => "nil",
        Marker::True | Marker::False => "bool",
        Marker::FixPos(_)
        | Marker::FixNeg(_)
        | Marker::U8
        | Marker::U16
        | Marker::U32
        | Marker::U64
        | Marker::I8
        | Marker::I16
        | Marker::I32
        | Marker::I64 => "integer",
        Marker::F32 | Marker::F64 => "float",
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => "string",
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => "binary",
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => "array",
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => "map",
        Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16
        | Marker::Ext8
        | Marker::Ext16
        | Marker::Ext32 => "extension",
        Marker::Reserved => "the reserved marker 0xc1",
    }
}

// ---------------------------------------------------------------- encoding

/// Encodes `value` as msgpack of type `ty`, canonically: object and map keys
/// sorted, integers in their shortest form, unknowns as `d4 00 00`.
pub fn encode_msgpack(value: &Value, ty: &Type) -> Result<Vec<u8>, MsgpackError> {
    let mut out = ByteBuf::new();
    write_value(&mut out, value, ty)?;
    Ok(out.into_vec())
}

/// Writes into a `ByteBuf` cannot fail; this unwraps the uninhabited error.
fn infallible<T>(result: Result<T, ValueWriteError<Infallible>>) -> T {
    match result {
        Ok(v) => v,
        Err(ValueWriteError::InvalidMarkerWrite(e) | ValueWriteError::InvalidDataWrite(e)) => {
            match e {}
        }
    }
}

fn len_u32(len: usize) -> Result<u32, MsgpackError> {
    u32::try_from(len).map_err(|_| MsgpackError::new("too large for msgpack"))
}

fn write_value(out: &mut ByteBuf, value: &Value, ty: &Type) -> Result<(), MsgpackError> {
    match (value, ty) {
        (Value::Null, _) => {
            let Ok(()) = encode::write_nil(out);
        }
        (Value::Unknown, _) => out.as_mut_vec().extend_from_slice(&UNKNOWN),
        (Value::Bool(b), Type::Bool) => {
            let Ok(()) = encode::write_bool(out, *b);
        }
        (Value::Number(n), Type::Number) => match n.wire_form() {
            WireNumber::Int(i) => {
                infallible(encode::write_sint(out, i));
            }
            WireNumber::Float(f) if f.is_nan() => {
                return Err(MsgpackError::new("NaN is not a valid number"))
            }
            WireNumber::Float(f) => infallible(encode::write_f64(out, f)),
            WireNumber::Text(s) => write_str(out, &s)?,
        },
        (Value::String(s), Type::String) => write_str(out, s)?,
        (Value::List(elems), Type::List(elem_ty)) | (Value::Set(elems), Type::Set(elem_ty)) => {
            infallible(encode::write_array_len(out, len_u32(elems.len())?));
            for (i, elem) in elems.iter().enumerate() {
                write_value(out, elem, elem_ty).map_err(|e| e.within(Step::Index(i)))?;
            }
        }
        (Value::Tuple(elems), Type::Tuple(elem_tys)) => {
            if elems.len() != elem_tys.len() {
                return Err(MsgpackError::new(format!(
                    "expected a tuple of {} elements, got {}",
                    elem_tys.len(),
                    elems.len()
                )));
            }
            infallible(encode::write_array_len(out, len_u32(elems.len())?));
            for (i, (elem, elem_ty)) in elems.iter().zip(elem_tys).enumerate() {
                write_value(out, elem, elem_ty).map_err(|e| e.within(Step::Index(i)))?;
            }
        }
        (Value::Map(map), Type::Map(elem_ty)) => {
            infallible(encode::write_map_len(out, len_u32(map.len())?));
            for (key, elem) in map {
                write_str(out, key)?;
                write_value(out, elem, elem_ty).map_err(|e| e.within(Step::Key(key)))?;
            }
        }
        (Value::Object(object), Type::Object(attrs)) => {
            // Walking the (sorted) schema writes attributes in canonical order.
            if let Some(extra) = object.keys().find(|k| !attrs.contains_key(*k)) {
                return Err(MsgpackError::new(format!(
                    "unsupported attribute {extra:?}"
                )));
            }
            infallible(encode::write_map_len(out, len_u32(attrs.len())?));
            for (name, attr_ty) in attrs {
                let Some(attr) = object.get(name) else {
                    return Err(MsgpackError::new(format!("missing attribute {name:?}")));
                };
                write_str(out, name)?;
                write_value(out, attr, attr_ty).map_err(|e| e.within(Step::Attr(name)))?;
            }
        }
        (Value::Dynamic(concrete, inner), Type::Dynamic) => {
            infallible(encode::write_array_len(out, 2));
            infallible(encode::write_bin(out, &concrete.to_json_bytes()));
            write_value(out, inner, concrete)?;
        }
        (Value::Dynamic(..), _) => {
            return Err(MsgpackError::new(format!(
                "expected {}, got a dynamic value",
                ty.kind_name()
            )));
        }
        (_, Type::Dynamic) => {
            return Err(MsgpackError::new(
                "expected a dynamic value (with its concrete type)",
            ));
        }
        (_, _) => return Err(MsgpackError::new(format!("expected {}", ty.kind_name()))),
    }
    Ok(())
}

fn write_str(out: &mut ByteBuf, s: &str) -> Result<(), MsgpackError> {
    len_u32(s.len())?;
    infallible(encode::write_str(out, s));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj<const N: usize>(attrs: [(&str, Value); N]) -> Value {
        Value::Object(attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn round_trip(value: &Value, ty: &Type) -> Vec<u8> {
        let bytes = encode_msgpack(value, ty).unwrap_or_else(|e| panic!("encode {value:?}: {e}"));
        let back =
            decode_msgpack(&bytes, ty).unwrap_or_else(|e| panic!("decode {bytes:02x?}: {e}"));
        assert_eq!(&back, value, "round trip of {bytes:02x?}");
        // Canonical: re-encoding the decoded value gives the same bytes.
        assert_eq!(encode_msgpack(&back, ty).unwrap(), bytes);
        bytes
    }

    fn workers_type() -> Type {
        Type::object([
            ("name", Type::String),
            ("enabled", Type::Bool),
            (
                "workers",
                Type::list(Type::object([
                    ("host", Type::String),
                    ("port", Type::Number),
                ])),
            ),
            ("labels", Type::map(Type::String)),
            ("zones", Type::set(Type::String)),
            ("pair", Type::tuple([Type::String, Type::Number])),
            ("extra", Type::Dynamic),
        ])
    }

    #[test]
    fn known_encodings() {
        assert_eq!(
            encode_msgpack(&Value::Unknown, &Type::String).unwrap(),
            [0xd4, 0, 0]
        );
        assert_eq!(encode_msgpack(&Value::Null, &Type::String).unwrap(), [0xc0]);
        let ty = Type::object([("a", Type::String)]);
        let bytes = round_trip(&obj([("a", Value::string("x"))]), &ty);
        assert_eq!(bytes, [0x81, 0xa1, 0x61, 0xa1, 0x78]);
        assert_eq!(round_trip(&Value::Bool(true), &Type::Bool), [0xc3]);
        assert_eq!(round_trip(&Value::int(1), &Type::Number), [0x01]);
        assert_eq!(round_trip(&Value::int(-1), &Type::Number), [0xff]);
        assert_eq!(
            round_trip(&Value::int(300), &Type::Number),
            [0xcd, 0x01, 0x2c]
        );
        // Keys are written sorted whatever the insertion order.
        let ty = Type::object([("b", Type::Number), ("a", Type::Number)]);
        assert_eq!(
            round_trip(&obj([("b", Value::int(2)), ("a", Value::int(1))]), &ty),
            [0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0x02]
        );
    }

    #[test]
    fn primitives_round_trip() {
        round_trip(&Value::Bool(false), &Type::Bool);
        round_trip(&Value::string(""), &Type::String);
        round_trip(&Value::string("héllo ✓"), &Type::String);
        round_trip(&Value::string("x".repeat(70_000)), &Type::String);
        round_trip(&Value::int(i64::MIN), &Type::Number);
        round_trip(&Value::int(i64::MAX), &Type::Number);
        for ty in [
            Type::Bool,
            Type::Number,
            Type::String,
            Type::Dynamic,
            Type::list(Type::Bool),
        ] {
            round_trip(&Value::Null, &ty);
            round_trip(&Value::Unknown, &ty);
        }
    }

    #[test]
    fn nested_object_with_null_and_unknown_at_depth() {
        let ty = workers_type();
        let value = obj([
            ("name", Value::string("coord")),
            ("enabled", Value::Unknown),
            (
                "workers",
                Value::List(vec![
                    obj([("host", Value::string("w1")), ("port", Value::int(5432))]),
                    obj([("host", Value::Null), ("port", Value::Unknown)]),
                    Value::Null,
                    Value::Unknown,
                ]),
            ),
            (
                "labels",
                Value::Map(
                    [
                        ("a".to_string(), Value::string("1")),
                        ("b".to_string(), Value::Unknown),
                    ]
                    .into(),
                ),
            ),
            (
                "zones",
                Value::Set(vec![Value::string("z1"), Value::Unknown]),
            ),
            ("pair", Value::Tuple(vec![Value::Null, Value::int(2)])),
            ("extra", Value::Null),
        ]);
        round_trip(&value, &ty);

        let all_null = obj([
            ("name", Value::Null),
            ("enabled", Value::Null),
            ("workers", Value::Null),
            ("labels", Value::Null),
            ("zones", Value::Null),
            ("pair", Value::Null),
            ("extra", Value::Unknown),
        ]);
        round_trip(&all_null, &ty);
        // A null object (prior state on create) is a bare nil.
        assert_eq!(round_trip(&Value::Null, &ty), [0xc0]);
        // Empty collections stay empty, distinct from null.
        round_trip(&Value::List(vec![]), &Type::list(Type::String));
        round_trip(&Value::Map(BTreeMap::new()), &Type::map(Type::String));
    }

    #[test]
    fn any_extension_decodes_as_unknown() {
        let cases: &[&[u8]] = &[
            &[0xd4, 0x00, 0x00],                   // Terraform 1.0.3
            &[0xc7, 0x03, 0x0c, 0x81, 0x01, 0xc3], // ext8 type 12, refinements {1: true}
            &[0xd5, 0x0c, 0x81, 0x01],             // fixext2 type 12
            &[0xd6, 0x0c, 1, 2, 3, 4],
            &[0xd7, 0x0c, 1, 2, 3, 4, 5, 6, 7, 8],
            &[0xd8, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xc8, 0x00, 0x02, 0x0c, 0xaa, 0xbb],
            &[0xc9, 0x00, 0x00, 0x00, 0x01, 0x7f, 0x00],
            &[0xc7, 0x00, 0xff], // empty ext8, negative type
        ];
        for bytes in cases {
            for ty in [Type::String, Type::Number, Type::Dynamic, workers_type()] {
                assert_eq!(
                    decode_msgpack(bytes, &ty),
                    Ok(Value::Unknown),
                    "{bytes:02x?} as {ty}"
                );
            }
        }
        // ... also nested, followed by more data.
        let ty = Type::object([("a", Type::String), ("b", Type::Number)]);
        let bytes = [
            0x82, 0xa1, b'a', 0xc7, 0x03, 0x0c, 0x81, 0x01, 0xc3, 0xa1, b'b', 0x07,
        ];
        assert_eq!(
            decode_msgpack(&bytes, &ty).unwrap(),
            obj([("a", Value::Unknown), ("b", Value::int(7))])
        );
        // Refinements are dropped: re-encoding writes the plain unknown.
        let value = decode_msgpack(&[0xd5, 0x0c, 0x81, 0x01], &Type::String).unwrap();
        assert_eq!(encode_msgpack(&value, &Type::String).unwrap(), UNKNOWN);
    }

    #[test]
    fn numbers_of_every_width() {
        let n = |bytes: &[u8]| match decode_msgpack(bytes, &Type::Number).unwrap() {
            Value::Number(n) => n,
            other => panic!("{other:?}"),
        };
        assert_eq!(n(&[0xcc, 0xff]), Number::from(255i64));
        assert_eq!(n(&[0xd0, 0x80]), Number::from(-128i64));
        assert_eq!(n(&[0xd1, 0x80, 0x00]), Number::from(-32768i64));
        assert_eq!(
            n(&[0xce, 0xff, 0xff, 0xff, 0xff]),
            Number::from(u64::from(u32::MAX))
        );
        assert_eq!(
            n(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Number::from(u64::MAX)
        );
        assert_eq!(n(&[0xca, 0x3f, 0xc0, 0x00, 0x00]), Number::from(1.5));
        assert_eq!(n(&[0xcb, 0x40, 0x14, 0, 0, 0, 0, 0, 0]), Number::from(5i64));
        assert_eq!(n(&[0xa2, b'4', b'2']), Number::from(42i64));
        assert!(decode_msgpack(&[0xa3, b'a', b'b', b'c'], &Type::Number).is_err());
        assert!(decode_msgpack(&[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0], &Type::Number).is_err());
        // NaN
    }

    #[test]
    fn big_and_precise_numbers_round_trip() {
        // 2^63 as u64 decodes; it is exactly an f64, so (like Terraform) it
        // is written back as float64.
        let two_63 = [0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0];
        let v = decode_msgpack(&two_63, &Type::Number).unwrap();
        assert_eq!(v, Value::Number(Number::from(1u64 << 63)));
        assert_eq!(
            round_trip(&v, &Type::Number),
            [0xcb, 0x43, 0xe0, 0, 0, 0, 0, 0, 0]
        );

        // u64::MAX is not an f64: decimal text.
        let v = Value::Number(Number::from(u64::MAX));
        let bytes = round_trip(&v, &Type::Number);
        assert_eq!(&bytes[..2], [0xb4, b'1']);

        // 1e400 travels as a decimal string.
        let text = format!("1{}", "0".repeat(400));
        let mut wire = Vec::new();
        encode::write_str(&mut wire, "1e400").unwrap();
        let v = decode_msgpack(&wire, &Type::Number).unwrap();
        assert_eq!(v, Value::Number(Number::parse(&text).unwrap()));
        let bytes = round_trip(&v, &Type::Number);
        let mut expected = Vec::new();
        encode::write_str(&mut expected, &text).unwrap();
        assert_eq!(bytes, expected);

        // 0.1 as a float64 and as Terraform's exact decimal "0.1" both keep their form.
        let float = [0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a];
        let v = decode_msgpack(&float, &Type::Number).unwrap();
        assert_eq!(v, Value::Number(Number::from(0.1)));
        assert_eq!(round_trip(&v, &Type::Number), float);
        let text = [0xa3, b'0', b'.', b'1'];
        let v = decode_msgpack(&text, &Type::Number).unwrap();
        assert_eq!(v.as_i64(), None);
        assert_eq!(round_trip(&v, &Type::Number), text);
    }

    #[test]
    fn object_key_set_must_match_schema() {
        let ty = Type::object([("a", Type::String)]);
        // {"a": "x", "b": nil}
        let extra = [0x82, 0xa1, b'a', 0xa1, b'x', 0xa1, b'b', 0xc0];
        let err = decode_msgpack(&extra, &ty).unwrap_err();
        assert_eq!(err.to_string(), r#"unsupported attribute "b""#);
        // {}
        let err = decode_msgpack(&[0x80], &ty).unwrap_err();
        assert_eq!(err.to_string(), r#"missing attribute "a""#);
        // {"a": "x", "a": "y"}
        let dup = [0x82, 0xa1, b'a', 0xa1, b'x', 0xa1, b'a', 0xa1, b'y'];
        assert!(decode_msgpack(&dup, &ty).is_err());

        let err = encode_msgpack(&obj([("a", Value::Null), ("b", Value::Null)]), &ty).unwrap_err();
        assert_eq!(err.to_string(), r#"unsupported attribute "b""#);
        let err = encode_msgpack(&obj([]), &ty).unwrap_err();
        assert_eq!(err.to_string(), r#"missing attribute "a""#);

        // Nested: the error names the path.
        let outer = Type::object([("inner", ty)]);
        let bytes = [0x81, 0xa5, b'i', b'n', b'n', b'e', b'r', 0x80];
        let err = decode_msgpack(&bytes, &outer).unwrap_err();
        assert_eq!(err.to_string(), r#".inner: missing attribute "a""#);
        assert_eq!(err.path(), ".inner");
    }

    #[test]
    fn mismatches_name_the_path() {
        let ty = workers_type();
        let mut value = obj([
            ("name", Value::string("c")),
            ("enabled", Value::Bool(true)),
            (
                "workers",
                Value::List(vec![
                    obj([("host", Value::string("w0")), ("port", Value::int(1))]),
                    obj([
                        ("host", Value::string("w1")),
                        ("port", Value::string("5432")),
                    ]),
                ]),
            ),
            (
                "labels",
                Value::Map([("k".to_string(), Value::string("v"))].into()),
            ),
            ("zones", Value::Set(vec![])),
            ("pair", Value::Tuple(vec![Value::Null, Value::Null])),
            ("extra", Value::Null),
        ]);
        let err = encode_msgpack(&value, &ty).unwrap_err();
        assert_eq!(err.to_string(), ".workers[1].port: expected number");

        let attrs = value.as_object_mut().unwrap();
        attrs.insert("workers".into(), Value::List(vec![]));
        attrs.insert(
            "labels".into(),
            Value::Map([("k".to_string(), Value::Bool(true))].into()),
        );
        let err = encode_msgpack(&value, &ty).unwrap_err();
        assert_eq!(err.to_string(), r#".labels["k"]: expected string"#);

        assert_eq!(
            encode_msgpack(&Value::string("x"), &Type::Bool)
                .unwrap_err()
                .to_string(),
            "expected bool"
        );
        assert!(encode_msgpack(&Value::Tuple(vec![Value::Null]), &Type::tuple([])).is_err());
        assert!(encode_msgpack(&Value::List(vec![]), &Type::set(Type::String)).is_err());
        assert!(encode_msgpack(&Value::string("x"), &Type::Dynamic).is_err());

        // Decoding: {"pair": ["a", true]} inside a list.
        let ty = Type::list(Type::object([(
            "pair",
            Type::tuple([Type::String, Type::Number]),
        )]));
        let bytes = [
            0x91, 0x81, 0xa4, b'p', b'a', b'i', b'r', 0x92, 0xa1, b'a', 0xc3,
        ];
        let err = decode_msgpack(&bytes, &ty).unwrap_err();
        assert_eq!(err.to_string(), "[0].pair[1]: expected number, got bool");
        // Wrong tuple length.
        let bytes = [0x91, 0x81, 0xa4, b'p', b'a', b'i', b'r', 0x91, 0xa1, b'a'];
        assert!(decode_msgpack(&bytes, &ty).is_err());
    }

    #[test]
    fn dynamic_values_round_trip() {
        let ty = Type::object([("extra", Type::Dynamic)]);
        let inner_ty = Type::object([("a", Type::list(Type::Number)), ("b", Type::String)]);
        let inner = obj([
            ("a", Value::List(vec![Value::int(1), Value::Unknown])),
            ("b", Value::Null),
        ]);
        let value = obj([("extra", Value::Dynamic(inner_ty.clone(), Box::new(inner)))]);
        let bytes = round_trip(&value, &ty);
        // [bin(type JSON), value]
        let type_json = inner_ty.to_json_bytes();
        assert_eq!(
            &bytes[..9],
            [0x81, 0xa5, b'e', b'x', b't', b'r', b'a', 0x92, 0xc4]
        );
        assert_eq!(bytes[9] as usize, type_json.len());
        assert_eq!(&bytes[10..10 + type_json.len()], type_json);

        // A dynamic holding a typed null, and a plain string.
        round_trip(
            &Value::Dynamic(Type::String, Box::new(Value::Null)),
            &Type::Dynamic,
        );
        let bytes = round_trip(
            &Value::Dynamic(Type::String, Box::new(Value::string("x"))),
            &Type::Dynamic,
        );
        assert_eq!(
            bytes,
            [0x92, 0xc4, 0x08, b'"', b's', b't', b'r', b'i', b'n', b'g', b'"', 0xa1, b'x']
        );
        // The type may also arrive as a str.
        let bytes = [
            0x92, 0xa8, b'"', b's', b't', b'r', b'i', b'n', b'g', b'"', 0xa1, b'x',
        ];
        assert_eq!(
            decode_msgpack(&bytes, &Type::Dynamic).unwrap(),
            Value::Dynamic(Type::String, Box::new(Value::string("x")))
        );
        // Malformed dynamic values.
        assert!(decode_msgpack(&[0x91, 0xc4, 0x00], &Type::Dynamic).is_err());
        assert!(decode_msgpack(&[0x92, 0xc4, 0x01, b'x', 0xc0], &Type::Dynamic).is_err());
        assert!(decode_msgpack(&[0xa1, b'x'], &Type::Dynamic).is_err());
    }

    #[test]
    fn malformed_input_is_rejected() {
        assert!(decode_msgpack(&[], &Type::String).is_err());
        assert!(decode_msgpack(&[0xa3, b'a'], &Type::String).is_err());
        assert!(decode_msgpack(&[0xc1], &Type::Bool).is_err());
        assert!(decode_msgpack(&[0xa1, 0xff], &Type::String).is_err()); // not UTF-8
        assert!(decode_msgpack(&[0xd8, 0x0c, 0x00], &Type::String).is_err()); // short ext
                                                                              // A huge declared length must fail cleanly, not allocate.
        assert!(decode_msgpack(&[0xdd, 0xff, 0xff, 0xff, 0xff], &Type::list(Type::Bool)).is_err());
        // Map keys must be strings.
        assert!(decode_msgpack(&[0x81, 0x01, 0x02], &Type::map(Type::Number)).is_err());
        let err = decode_msgpack(&[0xc3, 0xc3], &Type::Bool).unwrap_err();
        assert_eq!(err.to_string(), "1 trailing bytes after the value");
        let err = decode_msgpack(&[0xc0, 0x00], &Type::Bool).unwrap_err();
        assert!(err.to_string().contains("trailing"));
    }
}
