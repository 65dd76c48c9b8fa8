//! `create_if_missing`: the table's shape, created only when it is absent.
//! Names are quoted identifiers; column types passed the strict
//! `ColumnType` validator and are the one part written as given.

use tokio_postgres::Client;

use crate::cty::Value;
use crate::sql::{quote_ident, SqlError};

use super::schema::is_column_type;
use super::table_name::TableName;

pub async fn create_if_missing(
    client: &Client,
    table: &TableName,
    shape: &Value,
) -> Result<(), SqlError> {
    let statements = statements(table, shape)?;
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2)",
            &[&table.schema, &table.name],
        )
        .await?
        .get(0);
    if exists {
        return Ok(());
    }
    log::info!("creating table {table}");
    client
        .batch_execute(&format!("BEGIN; {}; COMMIT", statements.join("; ")))
        .await?;
    Ok(())
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_elements()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn quoted_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// CREATE TABLE plus its indexes.
pub fn statements(table: &TableName, shape: &Value) -> Result<Vec<String>, SqlError> {
    let mut definitions = Vec::new();
    for column in shape.attr("column").as_elements().unwrap_or_default() {
        let name = column.attr("name").as_str().unwrap_or_default();
        let ty = column.attr("type").as_str().unwrap_or_default();
        if !is_column_type(ty) {
            return Err(SqlError {
                message: format!("invalid column type {ty:?}"),
                code: None,
            });
        }
        let not_null = if column.attr("nullable").as_bool() == Some(false) {
            " NOT NULL"
        } else {
            ""
        };
        definitions.push(format!("{} {ty}{not_null}", quote_ident(name)));
    }
    let primary_key = strings(shape.attr("primary_key"));
    if !primary_key.is_empty() {
        definitions.push(format!("PRIMARY KEY ({})", quoted_list(&primary_key)));
    }
    let mut statements = vec![format!(
        "CREATE TABLE {} ({})",
        table.quoted(),
        definitions.join(", ")
    )];
    for columns in shape.attr("indexes").as_elements().unwrap_or_default() {
        let columns = strings(columns);
        let index_name: String = format!("{}_{}_idx", table.name, columns.join("_"))
            .chars()
            .take(63)
            .collect();
        statements.push(format!(
            "CREATE INDEX {} ON {} ({})",
            quote_ident(&index_name),
            table.quoted(),
            quoted_list(&columns)
        ));
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, ty: &str, nullable: bool) -> Value {
        Value::Object(
            [
                ("name", Value::string(name)),
                ("type", Value::string(ty)),
                ("nullable", Value::Bool(nullable)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )
    }

    #[test]
    fn sentry_nodestore_shape() {
        let shape = Value::Object(
            [
                (
                    "column".to_string(),
                    Value::List(vec![
                        column("id", "varchar(40)", false),
                        column("data", "text", false),
                        column("timestamp", "timestamptz", false),
                    ]),
                ),
                (
                    "primary_key".to_string(),
                    Value::List(vec![Value::string("id")]),
                ),
                (
                    "indexes".to_string(),
                    Value::List(vec![Value::List(vec![Value::string("timestamp")])]),
                ),
            ]
            .into(),
        );
        let table = TableName::parse("nodestore_node").unwrap();
        assert_eq!(
            statements(&table, &shape).unwrap(),
            vec![
                "CREATE TABLE \"public\".\"nodestore_node\" (\"id\" varchar(40) NOT NULL, \"data\" text NOT NULL, \"timestamp\" timestamptz NOT NULL, PRIMARY KEY (\"id\"))".to_string(),
                "CREATE INDEX \"nodestore_node_timestamp_idx\" ON \"public\".\"nodestore_node\" (\"timestamp\")".to_string(),
            ]
        );
    }
}
