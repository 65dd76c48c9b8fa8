//! The `timeouts { create = "30m" ... }` block Terraform users know.

use std::time::Duration;

use super::schema::{Attribute, Block, NestedBlock};
use super::validators::{duration, parse_duration};
use crate::cty::{Type, Value};

pub const BLOCK_NAME: &str = "timeouts";

/// A `timeouts` block with one duration attribute per operation named.
pub fn block(operations: &[&'static str]) -> NestedBlock {
    let mut block = Block::new("Time limits for long operations, as durations such as `\"30m\"`.");
    for op in operations {
        block = block.attribute(
            Attribute::optional(op, Type::String)
                .describe(format!(
                    "How long `{op}` may take before the provider gives up waiting."
                ))
                .validate(duration()),
        );
    }
    NestedBlock::single(BLOCK_NAME, block)
}

/// The configured timeout for `operation` in a resource value, or `default`.
pub fn get(resource: &Value, operation: &str, default: Duration) -> Duration {
    resource
        .attr(BLOCK_NAME)
        .attr(operation)
        .as_str()
        .and_then(parse_duration)
        .unwrap_or(default)
}
