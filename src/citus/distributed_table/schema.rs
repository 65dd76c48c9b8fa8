//! The `citus_distributed_table` schema.

use crate::cty::{Type, Value};
use crate::framework::validators::{int_between, not_blank, NameLike, Validator};
use crate::framework::{timeouts, AttrPath, Attribute, Block, Diagnostics, NestedBlock, Schema};

use super::super::connection;
use super::table_name::TableName;

struct QualifiedTableName;

impl Validator for QualifiedTableName {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        if let Some(Err(e)) = value.as_str().map(TableName::parse) {
            diags.error_at(path.clone(), "Invalid table name", format!("{path}: {e}"));
        }
    }
}

/// A column type as written in DDL: a type name, an optional `(n)` or
/// `(p,s)` modifier and optional `[]`. Strict, because type names cannot be
/// bind parameters.
pub struct ColumnType;

pub fn is_column_type(text: &str) -> bool {
    let (base, rest) = match text.find('(') {
        Some(i) => (&text[..i], &text[i..]),
        None => (text.trim_end_matches("[]"), ""),
    };
    let base_ok = !base.is_empty()
        && base.starts_with(|c: char| c.is_ascii_lowercase())
        && base
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ' ')
        && !base.ends_with(' ');
    let rest = rest.trim_end_matches("[]");
    let modifier_ok = rest.is_empty()
        || (rest.starts_with('(')
            && rest.ends_with(')')
            && rest[1..rest.len() - 1]
                .split(',')
                .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())));
    base_ok && modifier_ok
}

impl Validator for ColumnType {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        if let Some(text) = value.as_str() {
            if !is_column_type(text) {
                diags.error_at(
                    path.clone(),
                    "Invalid column type",
                    format!("{path} must be a type name such as \"text\", \"varchar(40)\", \"numeric(10,2)\" or \"timestamptz\", got {text:?}."),
                );
            }
        }
    }
}

fn column_name() -> NameLike {
    NameLike {
        max_len: 63,
        allowed: |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
        explain: "lower-case letters, digits and `_`",
    }
}

pub const COLOCATE_DEFAULT: &str = "default";
pub const COLOCATE_NONE: &str = "none";

pub fn schema() -> Schema {
    let column = Block::new("A column of the table to create.")
        .attribute(
            Attribute::required("name", Type::String)
                .describe("Column name.")
                .validate(column_name()),
        )
        .attribute(
            Attribute::required("type", Type::String)
                .describe("Column type, e.g. `varchar(40)`, `text`, `timestamptz`.")
                .validate(ColumnType),
        )
        .attribute(
            Attribute::optional("nullable", Type::Bool)
                .describe("Whether the column accepts NULL. Defaults to `true`.")
                .default(true),
        );
    let mut column_block = NestedBlock::list("column", column);
    column_block.min_items = 1;

    let create_if_missing = Block::new(
        "Creates the table with this shape when it does not exist yet, so that `terraform apply` alone builds the \
         layout. Scoped to creation: an existing table is never altered, and this block is not read back. A change of \
         this block alone changes nothing live (the plan keeps every computed value). `terraform import` records the \
         live table's shape here with the server's type names (`format_type`: `character varying(40)`, `timestamp with \
         time zone`, `bigint`): a configuration that spells the shape that way plans no change after import.",
    )
    .attribute(
        Attribute::optional("primary_key", Type::list(Type::String))
            .describe("Columns of the primary key. Citus requires it to include the distribution column."),
    )
    .attribute(
        Attribute::optional("indexes", Type::list(Type::list(Type::String)))
            .describe("Plain b-tree indexes to create, each a list of columns."),
    )
    .block(column_block);

    let block = Block::new(
        "Distributes an existing table with Citus and keeps its shard layout as configured.\n\n\
         Changes of `distribution_column`, `shard_count` or `colocate_with` are made in place with \
         `alter_distributed_table`, which **rewrites the whole table** (writes are blocked while it runs and it \
         needs several times the table's size in transient disk); the plan warns when it will. The configured \
         colocation is always passed explicitly. New shards are placed round-robin; balancing is \
         `citus_cluster`'s job.\n\n\
         **Destroy** leaves the table distributed, with every row, and only forgets it, unless \
         `undistribute_on_destroy` is set: then `undistribute_table` pulls every row back onto the coordinator \
         (a deliberate choice for big tables). The table and its data are never dropped.",
    )
    .attribute(
        Attribute::computed("id", Type::String).describe("The table's canonical name, `schema.table`.").use_state_for_unknown(),
    )
    .attribute(
        Attribute::required("table", Type::String)
            .describe("The table, schema-qualified (`public.nodestore_node`); without a schema, `public`. Quote parts with other characters as in SQL.")
            .validate(QualifiedTableName)
            .requires_replace(),
    )
    .attribute(
        Attribute::required("distribution_column", Type::String)
            .describe("Column whose hash places each row on a shard.")
            .validate(not_blank()),
    )
    .attribute(
        Attribute::optional_computed("shard_count", Type::Number)
            .describe("Number of shards, 1 to 64000. Defaults to the cluster's `citus.shard_count` when the table is distributed; must be left out when `colocate_with` names a table (the table then takes that table's count).")
            .validate(int_between(1, 64000))
            .use_state_for_unknown(),
    )
    .attribute(
        Attribute::optional("colocate_with", Type::String)
            .describe("`default` (Citus' default colocation group for the column type and shard count), `none` (a colocation group of its own), or the name of a distributed table to colocate with. Compared by meaning: a table alone in its group satisfies `none`. Defaults to `default`.")
            .validate(not_blank())
            .default(COLOCATE_DEFAULT),
    )
    .attribute(
        Attribute::optional("create_concurrently", Type::Bool)
            .describe("Distribute with `create_distributed_table_concurrently`, which does not block writes. Defaults to `false`.")
            .default(false),
    )
    .attribute(
        Attribute::optional("undistribute_on_destroy", Type::Bool)
            .describe("On destroy, run `undistribute_table`: every row comes back to the coordinator. Defaults to `false` (destroy only forgets the table).")
            .default(false),
    )
    .attribute(Attribute::computed("colocation_id", Type::Number).describe("Citus' colocation group of the table."))
    .attribute(
        Attribute::computed(
            "placements",
            Type::map(Type::object([("shards", Type::Number), ("bytes", Type::Number)])),
        )
        .describe("Shard placements per worker (`host:port`): how many, and their size in bytes (null when a worker could not be asked)."),
    )
    .block(connection::block())
    .block(NestedBlock::single("create_if_missing", create_if_missing).not_affecting_live())
    // Time limits steer apply only: a change of them alone changes nothing live.
    .block(timeouts::block(&["create", "update", "delete"]).not_affecting_live());
    Schema::new(0, block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_are_strict() {
        for ok in [
            "text",
            "varchar(40)",
            "numeric(10,2)",
            "timestamp with time zone",
            "int[]",
            "timestamptz",
        ] {
            assert!(is_column_type(ok), "{ok}");
        }
        for bad in [
            "",
            "Text",
            "text; drop table x",
            "varchar(",
            "int)",
            "a'b",
            "varchar(4o)",
        ] {
            assert!(!is_column_type(bad), "{bad}");
        }
    }
}

