//! Runs every attribute's validators over a configuration, nested blocks
//! included, so each problem is reported at its own attribute path.

use super::diag::{AttrPath, Diagnostics};
use super::schema::{Block, Nesting};
use crate::cty::Value;

pub fn validate_block(block: &Block, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
    let Some(object) = value.as_object() else {
        return;
    };
    for attribute in &block.attributes {
        let attr_value = object.get(attribute.name).unwrap_or(&Value::Null);
        if attr_value.is_null() || !attr_value.is_wholly_known() {
            continue;
        }
        let attr_path = path.attr(attribute.name);
        for validator in &attribute.validators {
            validator.validate(attr_value, &attr_path, diags);
        }
    }
    for nested in &block.blocks {
        let nested_value = object.get(nested.name).unwrap_or(&Value::Null);
        let nested_path = path.attr(nested.name);
        match (nested.nesting, nested_value) {
            (Nesting::Single, v) => validate_block(&nested.block, v, &nested_path, diags),
            (Nesting::List, Value::List(items)) => {
                for (i, item) in items.iter().enumerate() {
                    validate_block(&nested.block, item, &nested_path.index(i), diags);
                }
            }
            (Nesting::Map, Value::Map(items)) => {
                for (key, item) in items {
                    validate_block(&nested.block, item, &nested_path.key(key), diags);
                }
            }
            _ => {}
        }
    }
}
