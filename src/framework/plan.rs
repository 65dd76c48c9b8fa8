//! The generic part of planning, applied before a resource refines the plan.
//!
//! Terraform's proposed new state already holds the configuration for
//! non-computed attributes and config-or-prior for computed ones. On top of
//! that the framework:
//! - fills defaults for optional attributes the configuration leaves out;
//! - marks computed values unknown on create, and on update when anything the
//!   user controls changes (unless the attribute keeps its state value);
//! - lists replacement paths only where a `RequiresReplace` attribute really changes.

use std::collections::BTreeMap;

use super::diag::AttrPath;
use super::schema::{Block, Nesting, PlanModifier, Presence, Schema};
use crate::cty::Value;

/// A plan being made for one resource instance.
pub struct PlannedChange {
    /// Null on create.
    pub prior: Value,
    pub config: Value,
    /// What the provider promises apply will produce; starts as Terraform's proposal.
    pub planned: Value,
    pub requires_replace: Vec<AttrPath>,
}

impl PlannedChange {
    pub fn is_create(&self) -> bool {
        self.prior.is_null()
    }

    pub fn is_delete(&self) -> bool {
        self.planned.is_null()
    }
}

pub fn plan_resource_change(
    schema: &Schema,
    prior: Value,
    config: Value,
    proposed: Value,
) -> PlannedChange {
    if proposed.is_null() {
        return PlannedChange {
            prior,
            config,
            planned: Value::Null,
            requires_replace: Vec::new(),
        };
    }
    let mut planned = apply_defaults(&schema.block, &config, drop_unconfigured_single_blocks(&schema.block, &config, proposed));
    let user_changed = !prior.is_null() && differs_in_configurable(&schema.block, &prior, &planned);
    planned = unknown_computed(
        &schema.block,
        &prior,
        &config,
        planned,
        prior.is_null() || user_changed,
    );
    let mut requires_replace = Vec::new();
    if !prior.is_null() {
        collect_replacements(
            &schema.block,
            &prior,
            &planned,
            &AttrPath::default(),
            &mut requires_replace,
        );
    }
    PlannedChange {
        prior,
        config,
        planned,
        requires_replace,
    }
}

fn apply_defaults(block: &Block, config: &Value, proposed: Value) -> Value {
    let Value::Object(mut fields) = proposed else {
        return proposed;
    };
    for attribute in &block.attributes {
        if let Some(default) = attribute.default_value() {
            if config.attr(attribute.name).is_null() {
                fields.insert(attribute.name.to_string(), default.clone());
            }
        }
    }
    for nested in &block.blocks {
        let config_value = config.attr(nested.name);
        if let Some(value) = fields.remove(nested.name) {
            let value = map_nested(nested.nesting, value, config_value, |cfg, v| {
                apply_defaults(&nested.block, cfg, v)
            });
            fields.insert(nested.name.to_string(), value);
        }
    }
    Value::Object(fields)
}

/// A single nested block the configuration leaves out is null in the plan.
/// Terraform 1.0 proposes the prior block instead (its ProposedNew keeps
/// the prior object for a null configuration) and then rejects that very
/// plan: "planned for existence but config wants absence".
fn drop_unconfigured_single_blocks(block: &Block, config: &Value, proposed: Value) -> Value {
    let Value::Object(mut fields) = proposed else {
        return proposed;
    };
    if config.is_unknown() {
        return Value::Object(fields);
    }
    for nested in &block.blocks {
        let config_value = config.attr(nested.name);
        let Some(value) = fields.remove(nested.name) else {
            continue;
        };
        let value = match nested.nesting {
            Nesting::Single if config_value.is_null() => Value::Null,
            _ => map_nested(nested.nesting, value, config_value, |cfg, v| {
                drop_unconfigured_single_blocks(&nested.block, cfg, v)
            }),
        };
        fields.insert(nested.name.to_string(), value);
    }
    Value::Object(fields)
}

/// True when a value the user controls differs between prior and planned.
fn differs_in_configurable(block: &Block, prior: &Value, planned: &Value) -> bool {
    for attribute in &block.attributes {
        if attribute.presence != Presence::Computed
            && prior.attr(attribute.name) != planned.attr(attribute.name)
        {
            return true;
        }
    }
    for nested in block.blocks.iter().filter(|b| b.affects_live) {
        let (p, n) = (prior.attr(nested.name), planned.attr(nested.name));
        let differs = match (nested.nesting, p, n) {
            (Nesting::Single, p, n) => {
                p.is_null() != n.is_null()
                    || (!p.is_null() && differs_in_configurable(&nested.block, p, n))
            }
            (Nesting::List, Value::List(a), Value::List(b)) => {
                a.len() != b.len()
                    || a.iter()
                        .zip(b)
                        .any(|(x, y)| differs_in_configurable(&nested.block, x, y))
            }
            (Nesting::Map, Value::Map(a), Value::Map(b)) => {
                a.len() != b.len()
                    || a.iter().any(|(k, x)| {
                        b.get(k)
                            .is_none_or(|y| differs_in_configurable(&nested.block, x, y))
                    })
            }
            (_, p, n) => p != n,
        };
        if differs {
            return true;
        }
    }
    false
}

/// Marks computed attributes the configuration does not set as unknown when
/// apply may change them. Nested elements that are new are always unknown.
fn unknown_computed(
    block: &Block,
    prior: &Value,
    config: &Value,
    planned: Value,
    changing: bool,
) -> Value {
    let Value::Object(mut fields) = planned else {
        return planned;
    };
    for attribute in &block.attributes {
        let configured = !config.attr(attribute.name).is_null();
        let keeps_state = attribute.has_modifier(&PlanModifier::UseStateForUnknown)
            && !prior.attr(attribute.name).is_null();
        let volatile = attribute.is_computed()
            && !configured
            && attribute.default_value().is_none()
            && !keeps_state;
        if volatile && (prior.is_null() || changing) {
            fields.insert(attribute.name.to_string(), Value::Unknown);
        }
    }
    for nested in &block.blocks {
        let (prior_nested, config_nested) = (prior.attr(nested.name), config.attr(nested.name));
        if let Some(value) = fields.remove(nested.name) {
            let value = match (nested.nesting, value) {
                (Nesting::Single, v) => {
                    unknown_computed(&nested.block, prior_nested, config_nested, v, changing)
                }
                (Nesting::List, Value::List(items)) => Value::List(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let p = prior_nested
                                .as_elements()
                                .and_then(|e| e.get(i))
                                .unwrap_or(&Value::Null);
                            let c = config_nested
                                .as_elements()
                                .and_then(|e| e.get(i))
                                .unwrap_or(&Value::Null);
                            unknown_computed(&nested.block, p, c, v, changing)
                        })
                        .collect(),
                ),
                (Nesting::Map, Value::Map(items)) => Value::Map(
                    items
                        .into_iter()
                        .map(|(k, v)| {
                            let p = map_entry(prior_nested, &k);
                            let c = map_entry(config_nested, &k);
                            let v = unknown_computed(&nested.block, p, c, v, changing);
                            (k, v)
                        })
                        .collect(),
                ),
                (_, v) => v,
            };
            fields.insert(nested.name.to_string(), value);
        }
    }
    Value::Object(fields)
}

fn collect_replacements(
    block: &Block,
    prior: &Value,
    planned: &Value,
    path: &AttrPath,
    out: &mut Vec<AttrPath>,
) {
    for attribute in &block.attributes {
        if attribute.has_modifier(&PlanModifier::RequiresReplace) {
            let (p, n) = (prior.attr(attribute.name), planned.attr(attribute.name));
            if p != n && !p.is_null() {
                out.push(path.attr(attribute.name));
            }
        }
    }
    for nested in &block.blocks {
        let nested_path = path.attr(nested.name);
        match (
            nested.nesting,
            prior.attr(nested.name),
            planned.attr(nested.name),
        ) {
            (Nesting::Single, p, n) if !p.is_null() && !n.is_null() => {
                collect_replacements(&nested.block, p, n, &nested_path, out)
            }
            (Nesting::List, Value::List(a), Value::List(b)) => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    collect_replacements(&nested.block, x, y, &nested_path.index(i), out);
                }
            }
            (Nesting::Map, Value::Map(a), Value::Map(b)) => {
                for (key, x) in a {
                    if let Some(y) = b.get(key) {
                        collect_replacements(&nested.block, x, y, &nested_path.key(key), out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn map_nested(
    nesting: Nesting,
    value: Value,
    config: &Value,
    f: impl Fn(&Value, Value) -> Value,
) -> Value {
    match (nesting, value) {
        (Nesting::Single, v) if !v.is_null() && !v.is_unknown() => f(config, v),
        (Nesting::List, Value::List(items)) => Value::List(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    f(
                        config
                            .as_elements()
                            .and_then(|e| e.get(i))
                            .unwrap_or(&Value::Null),
                        v,
                    )
                })
                .collect(),
        ),
        (Nesting::Map, Value::Map(items)) => Value::Map(
            items
                .into_iter()
                .map(|(k, v)| {
                    let c = map_entry(config, &k);
                    let v = f(c, v);
                    (k, v)
                })
                .collect::<BTreeMap<_, _>>(),
        ),
        (_, v) => v,
    }
}

fn map_entry<'a>(map: &'a Value, key: &str) -> &'a Value {
    match map {
        Value::Map(m) => m.get(key).unwrap_or(&Value::Null),
        _ => &Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cty::Type;
    use crate::framework::schema::Attribute;

    fn schema() -> Schema {
        Schema::new(
            0,
            Block::new("t")
                .attribute(Attribute::required("name", Type::String).requires_replace())
                .attribute(Attribute::optional("size", Type::Number))
                .attribute(Attribute::optional("port", Type::Number).default(Value::int(5432)))
                .attribute(Attribute::computed("id", Type::String).use_state_for_unknown())
                .attribute(Attribute::computed("status", Type::String)),
        )
    }

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn a_single_block_left_out_of_the_configuration_plans_null_even_if_proposed() {
        let schema = Schema::new(
            0,
            Block::new("t")
                .attribute(Attribute::optional("name", Type::String))
                .block(crate::framework::NestedBlock::single(
                    "connection",
                    Block::new("c").attribute(Attribute::optional("host", Type::String)),
                )),
        );
        let prior = obj(&[("name", Value::string("a")), ("connection", obj(&[("host", Value::string("h"))]))]);
        let config = obj(&[("name", Value::string("a")), ("connection", Value::Null)]);
        // Terraform 1.0 proposes the prior block for a null configuration.
        let change = plan_resource_change(&schema, prior.clone(), config, prior);
        assert!(change.planned.attr("connection").is_null(), "{:?}", change.planned);
    }

    #[test]
    fn create_fills_defaults_and_unknowns() {
        let config = obj(&[
            ("name", "a".into()),
            ("size", Value::Null),
            ("port", Value::Null),
            ("id", Value::Null),
            ("status", Value::Null),
        ]);
        let change = plan_resource_change(&schema(), Value::Null, config.clone(), config);
        assert_eq!(change.planned.attr("port"), &Value::int(5432));
        assert!(change.planned.attr("id").is_unknown());
        assert!(change.planned.attr("status").is_unknown());
        assert!(change.requires_replace.is_empty());
    }

    #[test]
    fn unchanged_update_keeps_computed_and_replaces_nothing() {
        let prior = obj(&[
            ("name", "a".into()),
            ("size", Value::Null),
            ("port", Value::int(5432)),
            ("id", "x".into()),
            ("status", "ok".into()),
        ]);
        let config = obj(&[
            ("name", "a".into()),
            ("size", Value::Null),
            ("port", Value::Null),
            ("id", Value::Null),
            ("status", Value::Null),
        ]);
        let change = plan_resource_change(&schema(), prior.clone(), config, prior.clone());
        assert_eq!(change.planned, prior);
        assert!(change.requires_replace.is_empty());
    }

    #[test]
    fn changed_update_marks_volatile_computed_unknown_and_replaces_on_name() {
        let prior = obj(&[
            ("name", "a".into()),
            ("size", Value::Null),
            ("port", Value::int(5432)),
            ("id", "x".into()),
            ("status", "ok".into()),
        ]);
        let config = obj(&[
            ("name", "b".into()),
            ("size", Value::Null),
            ("port", Value::Null),
            ("id", Value::Null),
            ("status", Value::Null),
        ]);
        let proposed = obj(&[
            ("name", "b".into()),
            ("size", Value::Null),
            ("port", Value::int(5432)),
            ("id", "x".into()),
            ("status", "ok".into()),
        ]);
        let change = plan_resource_change(&schema(), prior, config, proposed);
        assert_eq!(change.planned.attr("id"), &Value::string("x"));
        assert!(change.planned.attr("status").is_unknown());
        assert_eq!(change.requires_replace, vec![AttrPath::root("name")]);
    }
}
