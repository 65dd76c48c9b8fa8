//! Write-only attributes (protocol 5.8, Terraform 1.11): Terraform sends their
//! values in the configuration at plan and apply and never stores them, so
//! the provider must answer null for them in planned and new state.
//!
//! Resources never deal with this themselves: the gRPC layer refuses them on
//! a Terraform that cannot keep them out of state, nulls them in every value
//! it returns, and at apply lays the configuration's values over the planned
//! value it hands to `create`/`update`, so a resource reads a write-only
//! password as it reads any other attribute.

use super::diag::{AttrPath, Diagnostics};
use super::schema::{Block, Nesting};
use crate::cty::Value;

/// On a Terraform without write-only support (it would store the value in
/// plan and state as an ordinary attribute), a set write-only attribute is an
/// error at its path.
pub fn refuse_unsupported(block: &Block, config: &Value, path: &AttrPath, diags: &mut Diagnostics) {
    visit(block, config, path, &mut |name, value, path| {
        if !value.is_null() {
            diags.error_at(
                path.clone(),
                "Write-only attribute needs Terraform 1.11",
                format!(
                    "`{name}` is write-only: Terraform 1.11 and later keep its value out of plan and state. \
                     This Terraform would store it; use the attribute without the `_wo` suffix instead, \
                     or upgrade Terraform."
                ),
            );
        }
    });
}

/// The value with every write-only attribute null, as Terraform requires in
/// planned and new state.
pub fn nulled(block: &Block, value: Value) -> Value {
    transform(block, value, &Value::Null, &|_, _| Value::Null)
}

/// `planned` with each write-only attribute taken from `config`, for apply.
pub fn from_config(block: &Block, planned: Value, config: &Value) -> Value {
    transform(block, planned, config, &|_, config| config.clone())
}

fn visit(
    block: &Block,
    value: &Value,
    path: &AttrPath,
    f: &mut dyn FnMut(&str, &Value, &AttrPath),
) {
    let Some(object) = value.as_object() else {
        return;
    };
    for attribute in block.attributes.iter().filter(|a| a.write_only) {
        let at = path.attr(attribute.name);
        f(attribute.name, object.get(attribute.name).unwrap_or(&Value::Null), &at);
    }
    for nested in &block.blocks {
        let nested_value = object.get(nested.name).unwrap_or(&Value::Null);
        let at = path.attr(nested.name);
        match (nested.nesting, nested_value) {
            (Nesting::Single, v) => visit(&nested.block, v, &at, f),
            (Nesting::List, Value::List(items)) => {
                for (i, item) in items.iter().enumerate() {
                    visit(&nested.block, item, &at.index(i), f);
                }
            }
            (Nesting::Map, Value::Map(items)) => {
                for (key, item) in items {
                    visit(&nested.block, item, &at.key(key), f);
                }
            }
            _ => {}
        }
    }
}

/// Rewrites each write-only attribute of `value` with `f(value's, config's)`,
/// walking `config` alongside (list elements by index, map elements by key).
fn transform(block: &Block, value: Value, config: &Value, f: &dyn Fn(&Value, &Value) -> Value) -> Value {
    let Value::Object(mut fields) = value else {
        return value;
    };
    for attribute in block.attributes.iter().filter(|a| a.write_only) {
        let current = fields.remove(attribute.name).unwrap_or(Value::Null);
        let replaced = f(&current, config.attr(attribute.name));
        fields.insert(attribute.name.to_string(), replaced);
    }
    for nested in &block.blocks {
        if !has_write_only(&nested.block) {
            continue;
        }
        let Some(current) = fields.remove(nested.name) else {
            continue;
        };
        let config = config.attr(nested.name);
        let replaced = match (nested.nesting, current) {
            (Nesting::Single, v) => transform(&nested.block, v, config, f),
            (Nesting::List, Value::List(items)) => Value::List(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let element = config.as_elements().and_then(|c| c.get(i)).unwrap_or(&Value::Null);
                        transform(&nested.block, item, element, f)
                    })
                    .collect(),
            ),
            (Nesting::Map, Value::Map(items)) => Value::Map(
                items
                    .into_iter()
                    .map(|(key, item)| {
                        let element = match config {
                            Value::Map(c) => c.get(&key).unwrap_or(&Value::Null),
                            _ => &Value::Null,
                        };
                        let item = transform(&nested.block, item, element, f);
                        (key, item)
                    })
                    .collect(),
            ),
            (_, v) => v,
        };
        fields.insert(nested.name.to_string(), replaced);
    }
    Value::Object(fields)
}

fn has_write_only(block: &Block) -> bool {
    block.attributes.iter().any(|a| a.write_only) || block.blocks.iter().any(|b| has_write_only(&b.block))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cty::Type;
    use crate::framework::{Attribute, NestedBlock};

    fn block() -> Block {
        Block::new("")
            .attribute(Attribute::optional("password", Type::String).sensitive())
            .attribute(Attribute::optional("password_wo", Type::String).write_only())
            .attribute(Attribute::optional("password_wo_version", Type::Number))
            .block(NestedBlock::single(
                "citus",
                Block::new("").attribute(Attribute::optional("secret_wo", Type::String).write_only()),
            ))
    }

    fn object(fields: Vec<(&str, Value)>) -> Value {
        Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn value(wo: Value, nested: Value) -> Value {
        object(vec![
            ("password", Value::Null),
            ("password_wo", wo),
            ("password_wo_version", Value::int(1)),
            ("citus", object(vec![("secret_wo", nested)])),
        ])
    }

    #[test]
    fn nulled_clears_write_only_values_at_every_depth() {
        let out = nulled(&block(), value(Value::string("a"), Value::string("b")));
        assert_eq!(out, value(Value::Null, Value::Null));
        assert!(out.attr("citus").is_wholly_known());
    }

    #[test]
    fn from_config_lays_config_values_over_planned() {
        let planned = value(Value::Null, Value::Null);
        let config = value(Value::string("a"), Value::string("b"));
        assert_eq!(from_config(&block(), planned, &config), config);
        // Null nested block in planned (absent in config): stays null.
        let mut planned = value(Value::Null, Value::Null);
        planned.as_object_mut().unwrap().insert("citus".into(), Value::Null);
        let out = from_config(&block(), planned, &config);
        assert!(out.attr("citus").is_null());
    }

    #[test]
    fn old_terraform_gets_an_error_per_set_write_only_attribute() {
        let mut diags = Diagnostics::new();
        refuse_unsupported(&block(), &value(Value::string("a"), Value::string("b")), &AttrPath::default(), &mut diags);
        let paths: Vec<String> = diags.iter().map(|d| format!("{:?}", d.path)).collect();
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(paths[0].contains("password_wo") && paths[1].contains("secret_wo"), "{paths:?}");
        let mut diags = Diagnostics::new();
        refuse_unsupported(&block(), &value(Value::Null, Value::Null), &AttrPath::default(), &mut diags);
        assert_eq!(diags.iter().count(), 0);
    }
}
