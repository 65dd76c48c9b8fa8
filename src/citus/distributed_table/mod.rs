//! `citus_distributed_table`: the shard layout of one table as code.

mod catalog;
mod ddl;
mod schema;
mod shape;
mod table_name;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::Client;

use crate::cty::Value;
use crate::framework::{timeouts, AttrPath, Context, Diagnostics, PlannedChange, Resource, Schema};
use crate::sql::{ConnectionSettings, SqlError};

use super::retry::execute_with_retries;
use super::ConnectionDefaults;
use catalog::{Distribution, LiveTable};
use schema::{COLOCATE_DEFAULT, COLOCATE_NONE};
use table_name::TableName;

pub struct DistributedTableResource {
    defaults: Arc<ConnectionDefaults>,
}

/// What a planned value asks for.
struct TableSpec {
    table: TableName,
    column: String,
    shard_count: Option<i64>,
    colocate_with: String,
    concurrently: bool,
}

impl TableSpec {
    fn from_value(value: &Value) -> Option<TableSpec> {
        Some(TableSpec {
            table: TableName::parse(value.attr("table").as_str()?).ok()?,
            column: value.attr("distribution_column").as_str()?.to_string(),
            shard_count: value.attr("shard_count").as_i64(),
            colocate_with: value
                .attr("colocate_with")
                .as_str()
                .unwrap_or(COLOCATE_DEFAULT)
                .to_string(),
            concurrently: value.attr("create_concurrently").as_bool().unwrap_or(false),
        })
    }

    /// `colocate_with` names a table (not `default` / `none`).
    fn colocation_table(&self) -> Option<TableName> {
        match self.colocate_with.as_str() {
            COLOCATE_DEFAULT | COLOCATE_NONE => None,
            other => TableName::parse(other).ok(),
        }
    }
}

/// The colocation a live table satisfies, said the way the configuration
/// says it when it can be: a table alone in its group satisfies `none`, the
/// default group satisfies `default`, a named partner satisfies its name.
fn observed_colocation(configured: Option<&str>, live: &Distribution) -> String {
    let alone = live.colocated_with.is_empty();
    let partner = || {
        live.colocated_with
            .first()
            .cloned()
            .unwrap_or_else(|| COLOCATE_NONE.to_string())
    };
    let names_partner = |wanted: &str| {
        TableName::parse(wanted).ok().is_some_and(|w| {
            live.colocated_with
                .iter()
                .any(|p| TableName::parse(p).ok().as_ref() == Some(&w))
        })
    };
    match configured {
        Some(COLOCATE_NONE) if alone => COLOCATE_NONE.into(),
        Some(COLOCATE_DEFAULT) if live.in_default_group => COLOCATE_DEFAULT.into(),
        Some(table)
            if table != COLOCATE_NONE && table != COLOCATE_DEFAULT && names_partner(table) =>
        {
            table.into()
        }
        None if live.in_default_group && !alone => COLOCATE_DEFAULT.into(),
        _ if alone => COLOCATE_NONE.into(),
        _ => partner(),
    }
}

/// What `alter_distributed_table` must change to reach `spec`; `None` when
/// the live table already matches.
struct Rewrite {
    column: Option<String>,
    shard_count: Option<i32>,
    colocate_with: String,
}

fn rewrite_needed(spec: &TableSpec, live: &Distribution) -> Option<Rewrite> {
    let column = (live.column != spec.column).then(|| spec.column.clone());
    let shard_count = spec
        .shard_count
        .filter(|n| *n != live.shard_count && spec.colocation_table().is_none())
        .map(|n| n as i32);
    let colocation_differs =
        observed_colocation(Some(&spec.colocate_with), live) != spec.colocate_with;
    (column.is_some() || shard_count.is_some() || colocation_differs).then(|| Rewrite {
        column,
        shard_count,
        colocate_with: spec.colocate_with.clone(),
    })
}

fn object(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn kept(value: &Value) -> Value {
    if value.is_wholly_known() {
        value.clone()
    } else {
        Value::Null
    }
}

fn or_false(value: &Value) -> Value {
    Value::Bool(value.as_bool().unwrap_or(false))
}

impl DistributedTableResource {
    pub fn new(defaults: Arc<ConnectionDefaults>) -> Self {
        DistributedTableResource { defaults }
    }

    fn connection(&self, value: &Value) -> ConnectionSettings {
        self.defaults
            .resolve(value.attr(crate::citus::connection::BLOCK_NAME), "localhost", 5432)
    }

    async fn connect(&self, value: &Value, diags: &mut Diagnostics) -> Option<Client> {
        let settings = self.connection(value);
        match settings.connect().await {
            Ok(c) => Some(c),
            Err(e) => {
                diags.error(
                    "Cannot connect to the coordinator",
                    format!(
                        "The provider could not connect to the coordinator at {}: {e}",
                        settings.address()
                    ),
                );
                None
            }
        }
    }

    /// Reads the table into state; `None` when it is gone or no longer distributed.
    async fn observe(
        &self,
        client: &Client,
        prior: &Value,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let Ok(table) = TableName::parse(prior.attr("table").as_str().unwrap_or_default()) else {
            return None;
        };
        let live = match catalog::find(client, &table).await {
            Ok(Some(LiveTable {
                oid,
                distribution: Some(d),
            })) => (oid, d),
            Ok(_) => return None,
            Err(e) => {
                diags.error(
                    "Cannot read the table's distribution",
                    format!("{table}: {e}"),
                );
                return None;
            }
        };
        let (oid, distribution) = live;
        let placements = match catalog::placements(client, oid).await {
            Ok((placements, size_error)) => {
                if let Some(e) = size_error {
                    diags.warning(
                        "Shard sizes unavailable",
                        format!("Citus could not report shard sizes of {table} ({e}); placement counts are current, bytes are unknown."),
                    );
                }
                placements
            }
            Err(e) => {
                diags.warning("Cannot read placements", format!("{table}: {e}"));
                BTreeMap::new()
            }
        };
        let placements = Value::Map(
            placements
                .into_iter()
                .map(|(node, p)| {
                    let bytes = p.bytes.map(Value::int).unwrap_or(Value::Null);
                    (
                        node,
                        object(vec![("shards", Value::int(p.shards)), ("bytes", bytes)]),
                    )
                })
                .collect(),
        );
        let configured = prior.attr("colocate_with").as_str();
        Some(object(vec![
            ("id", Value::string(table.to_string())),
            ("table", kept(prior.attr("table"))),
            (
                "distribution_column",
                Value::string(distribution.column.clone()),
            ),
            ("shard_count", Value::int(distribution.shard_count)),
            (
                "colocate_with",
                Value::string(observed_colocation(configured, &distribution)),
            ),
            (
                "create_concurrently",
                or_false(prior.attr("create_concurrently")),
            ),
            (
                "undistribute_on_destroy",
                or_false(prior.attr("undistribute_on_destroy")),
            ),
            (
                "colocation_id",
                Value::int(distribution.colocation_id as i64),
            ),
            ("placements", placements),
            (crate::citus::connection::BLOCK_NAME, kept(prior.attr(crate::citus::connection::BLOCK_NAME))),
            ("create_if_missing", kept(prior.attr("create_if_missing"))),
            ("timeouts", kept(prior.attr("timeouts"))),
        ]))
    }

    /// Checks the database can do what the plan asks: the table (or the
    /// means to create it), the column, the colocation target and its type.
    /// `create_shape` is the `create_if_missing` block when the table may be
    /// created: then a missing table is checked against that shape. Every
    /// check runs before anything is changed.
    async fn check_inputs(
        &self,
        client: &Client,
        spec: &TableSpec,
        create_shape: Option<&Value>,
        diags: &mut Diagnostics,
    ) -> Option<LiveTable> {
        // The colocation target first: it must exist whether or not the
        // table does, so that nothing is created for a plan that cannot work.
        let mut target_type = None;
        if let Some(target) = spec.colocation_table() {
            match catalog::distribution_column_type(client, &target).await {
                Ok(Some(t)) => target_type = Some((target, t)),
                Ok(None) => diags.error_at(
                    AttrPath::root("colocate_with"),
                    "Colocation target not distributed",
                    format!("colocate_with: {target} does not exist or is not a hash-distributed table; distribute it first, or use \"default\", \"none\" or a distributed table."),
                ),
                Err(e) => diags.error("Cannot look up the colocation target", e.message),
            }
        }
        let colocation_mismatch = |column_type: &str, diags: &mut Diagnostics| {
            if let Some((target, t)) = &target_type {
                if t != column_type {
                    diags.error_at(
                        AttrPath::root("colocate_with"),
                        "Colocation impossible",
                        format!(
                            "{target} is distributed by a column of type {t}, but {}.{} is {column_type}: colocated tables need the same distribution column type.",
                            spec.table, spec.column
                        ),
                    );
                }
            }
        };
        let live = match catalog::find(client, &spec.table).await {
            Ok(live) => live,
            Err(e) => {
                diags.error("Cannot look up the table", format!("{}: {e}", spec.table));
                return None;
            }
        };
        let Some(live) = live else {
            match create_shape {
                None => diags.error_at(
                    AttrPath::root("table"),
                    "Table not found",
                    format!("There is no table {} on the coordinator. Create it first, or add a create_if_missing block.", spec.table),
                ),
                Some(shape) => {
                    self.check_shape_types(client, spec, shape, diags, colocation_mismatch)
                        .await
                }
            }
            return None;
        };
        let column_type = match catalog::column_type(client, live.oid, &spec.column).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                diags.error_at(
                    AttrPath::root("distribution_column"),
                    "Column not found",
                    format!("Table {} has no column {:?}.", spec.table, spec.column),
                );
                return None;
            }
            Err(e) => {
                diags.error("Cannot look up the column", e.message);
                return None;
            }
        };
        colocation_mismatch(&column_type, diags);
        Some(live)
    }

    /// The column types of a table to create are types the server knows,
    /// and the distribution column's type suits the colocation target.
    async fn check_shape_types(
        &self,
        client: &Client,
        spec: &TableSpec,
        shape: &Value,
        diags: &mut Diagnostics,
        colocation_mismatch: impl Fn(&str, &mut Diagnostics),
    ) {
        let columns = shape.attr("column").as_elements().unwrap_or_default();
        for (i, column) in columns.iter().enumerate() {
            let (Some(name), Some(ty)) = (column.attr("name").as_str(), column.attr("type").as_str())
            else {
                continue;
            };
            // The type name is a bind parameter: to_regtype parses it, NULL when unknown.
            let known = client
                .query_one(
                    "SELECT pg_catalog.format_type(pg_catalog.to_regtype($1), NULL)",
                    &[&ty],
                )
                .await
                .map(|r| r.get::<_, Option<String>>(0));
            match known {
                Ok(Some(type_name)) => {
                    if name == spec.column {
                        colocation_mismatch(&type_name, diags);
                    }
                }
                Ok(None) | Err(_) => {
                    let path = AttrPath::root("create_if_missing").attr("column").index(i).attr("type");
                    diags.error_at(
                        path.clone(),
                        "Unknown column type",
                        format!("{path}: the coordinator knows no type {ty:?}; use a type such as \"text\", \"bigint\", \"varchar(40)\" or \"timestamptz\"."),
                    );
                }
            }
        }
    }

    /// Distributes or rewrites as needed, then reads back.
    async fn converge(
        &self,
        ctx: &Context,
        planned: &Value,
        operation: &str,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let Some(spec) = TableSpec::from_value(planned) else {
            diags.error("Invalid table", "The table name could not be parsed.");
            return None;
        };
        let client = self.connect(planned, diags).await?;
        let create_block = planned.attr("create_if_missing");
        if !create_block.is_null() {
            // Every precondition before the table is created: no partial change.
            self.check_inputs(&client, &spec, Some(create_block), diags).await;
            if diags.has_errors() {
                return None;
            }
            if let Err(e) = ddl::create_if_missing(&client, &spec.table, create_block).await {
                diags.error_at(
                    AttrPath::root("create_if_missing"),
                    "Cannot create the table",
                    format!("{}: {e}", spec.table),
                );
                return None;
            }
        }
        let live = self.check_inputs(&client, &spec, None, diags).await?;
        if diags.has_errors() {
            return None;
        }
        let timeout = timeouts::get(planned, operation, Duration::from_secs(60 * 60));
        let work = async {
            match &live.distribution {
                None => distribute(ctx, &client, live.oid, &spec).await,
                Some(d) => match rewrite_needed(&spec, d) {
                    Some(rewrite) => alter(&client, live.oid, &rewrite).await,
                    None => Ok(()),
                },
            }
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, work) => r.unwrap_or_else(|_| Err(SqlError {
                message: format!("not finished after {}s; the statement keeps running on the coordinator and the next apply reads its result", timeout.as_secs()),
                code: None,
            })),
            _ = ctx.stop.stopped() => Err(SqlError {
                message: "interrupted; the statement keeps running on the coordinator and the next apply reads its result".into(),
                code: None,
            }),
        };
        if let Err(e) = outcome {
            diags.error(format!("Citus could not lay out {}", spec.table), e.message);
            // The session may still be busy with the statement: the next
            // refresh reads what it did.
            return None;
        }
        self.observe(&client, planned, diags).await
    }
}

async fn distribute(
    ctx: &Context,
    client: &Client,
    oid: u32,
    spec: &TableSpec,
) -> Result<(), SqlError> {
    // shard_count goes only with 'default' or 'none'; a named table fixes it.
    let shard_count = spec
        .shard_count
        .filter(|_| spec.colocation_table().is_none())
        .map(|n| n as i32);
    let function = if spec.concurrently {
        "create_distributed_table_concurrently"
    } else {
        "create_distributed_table"
    };
    let statement = format!(
        "SELECT pg_catalog.{function}($1::oid::regclass, $2, colocate_with := $3, shard_count := $4)"
    );
    log::info!(
        "distributing {} by {:?} ({function})",
        spec.table,
        spec.column
    );
    execute_with_retries(
        ctx,
        client,
        &statement,
        &[&oid, &spec.column, &spec.colocate_with, &shard_count],
    )
    .await
}

async fn alter(client: &Client, oid: u32, rewrite: &Rewrite) -> Result<(), SqlError> {
    log::info!(
        "rewriting table oid {oid} with alter_distributed_table (column {:?}, shard_count {:?}, colocate_with {:?})",
        rewrite.column, rewrite.shard_count, rewrite.colocate_with
    );
    // The configured colocation is always passed: given only a shard count,
    // Citus would colocate by 'default'.
    client
        .execute(
            "SELECT pg_catalog.alter_distributed_table($1::oid::regclass, distribution_column := $2, \
             shard_count := $3, colocate_with := $4, cascade_to_colocated := false)",
            &[&oid, &rewrite.column, &rewrite.shard_count, &rewrite.colocate_with],
        )
        .await?;
    Ok(())
}

#[async_trait]
impl Resource for DistributedTableResource {
    fn type_name(&self) -> &'static str {
        "citus_distributed_table"
    }

    fn schema(&self) -> Schema {
        schema::schema()
    }

    fn validate_config(&self, config: &Value, diags: &mut Diagnostics) {
        crate::citus::connection::validate_pairs(config.attr(crate::citus::connection::BLOCK_NAME), Some(&AttrPath::root(crate::citus::connection::BLOCK_NAME)), diags);
        let colocate = config.attr("colocate_with").as_str();
        let names_table = colocate.is_some_and(|c| c != COLOCATE_DEFAULT && c != COLOCATE_NONE);
        if names_table && !config.attr("shard_count").is_null() {
            diags.error_at(
                AttrPath::root("shard_count"),
                "shard_count conflicts with colocate_with",
                "A table colocated with another table takes that table's shard count: leave shard_count out, or colocate with \"default\" or \"none\".",
            );
        }
        if let Some(Err(e)) = colocate.filter(|_| names_table).map(TableName::parse) {
            diags.error_at(AttrPath::root("colocate_with"), "Invalid table name", e);
        }
        let create_shape = config.attr("create_if_missing");
        if !create_shape.is_null() {
            shape::check(create_shape, config.attr("distribution_column").as_str(), diags);
        }
    }

    async fn modify_plan(
        &self,
        _ctx: &Context,
        change: &mut PlannedChange,
        diags: &mut Diagnostics,
    ) {
        let inputs = [
            "table",
            "distribution_column",
            "colocate_with",
            crate::citus::connection::BLOCK_NAME,
            "create_if_missing",
        ];
        if !self.defaults.is_known()
            || !inputs
                .iter()
                .all(|name| change.planned.attr(name).is_wholly_known())
        {
            return; // Values from resources not yet created: checked at apply.
        }
        let Some(spec) = TableSpec::from_value(&change.planned) else {
            return;
        };
        // `nodestore_node` and `public.nodestore_node` are one table (an
        // import records the name as its ID spells it): no replacement.
        let same_table = change
            .prior
            .attr("table")
            .as_str()
            .and_then(|t| TableName::parse(t).ok())
            .is_some_and(|prior| prior == spec.table);
        if same_table {
            change
                .requires_replace
                .retain(|p| *p != AttrPath::root("table"));
        }
        // Colocated with a table, the shard count is that table's: known after apply.
        let colocation_changes =
            change.prior.attr("colocate_with") != change.planned.attr("colocate_with");
        if spec.colocation_table().is_some()
            && change.config.attr("shard_count").is_null()
            && colocation_changes
        {
            if let Some(fields) = change.planned.as_object_mut() {
                fields.insert("shard_count".into(), Value::Unknown);
            }
        }
        // Plan-time checks need the coordinator; when it is not there yet
        // (created in this same apply) they run at apply instead.
        let Ok(client) = self.connection(&change.planned).connect().await else {
            return;
        };
        if !catalog::citus_installed(&client).await.unwrap_or(false) {
            return; // The cluster is being set up in this same apply.
        }
        let create_shape = change.planned.attr("create_if_missing");
        let live = self
            .check_inputs(&client, &spec, (!create_shape.is_null()).then_some(create_shape), diags)
            .await;
        if let Some(rewrite) = live
            .as_ref()
            .and_then(|l| l.distribution.as_ref())
            .and_then(|d| rewrite_needed(&spec, d))
        {
            {
                diags.warning_at(
                    AttrPath::root("shard_count"),
                    format!("Applying this plan rewrites {}", spec.table),
                    format!(
                        "alter_distributed_table will rewrite the whole table (shard_count {}, column {}, colocate_with {:?}): writes to it are blocked while it runs, and it needs several times the table's size in free disk.",
                        rewrite.shard_count.map(|n| n.to_string()).unwrap_or_else(|| "unchanged".into()),
                        rewrite.column.clone().unwrap_or_else(|| "unchanged".into()),
                        rewrite.colocate_with
                    ),
                );
            }
        }
    }

    async fn create(&self, ctx: &Context, planned: &Value, diags: &mut Diagnostics) -> Value {
        self.converge(ctx, planned, "create", diags)
            .await
            .unwrap_or(Value::Null)
    }

    async fn read(&self, _ctx: &Context, state: &Value, diags: &mut Diagnostics) -> Option<Value> {
        let client = self.connect(state, diags).await?;
        self.observe(&client, state, diags).await
    }

    async fn update(
        &self,
        ctx: &Context,
        prior: &Value,
        planned: &Value,
        diags: &mut Diagnostics,
    ) -> Value {
        match self.converge(ctx, planned, "update", diags).await {
            Some(state) => state,
            None => prior.clone(),
        }
    }

    async fn delete(&self, ctx: &Context, prior: &Value, diags: &mut Diagnostics) {
        if !prior
            .attr("undistribute_on_destroy")
            .as_bool()
            .unwrap_or(false)
        {
            log::info!(
                "forgetting {}; it stays distributed",
                prior.attr("id").as_str().unwrap_or_default()
            );
            return;
        }
        let Some(table) = prior
            .attr("table")
            .as_str()
            .and_then(|t| TableName::parse(t).ok())
        else {
            return;
        };
        let Some(client) = self.connect(prior, diags).await else {
            return;
        };
        let live = match catalog::find(&client, &table).await {
            Ok(Some(live)) if live.distribution.is_some() => live,
            Ok(_) => return,
            Err(e) => {
                diags.error("Cannot look up the table", e.message);
                return;
            }
        };
        let timeout = timeouts::get(prior, "delete", Duration::from_secs(60 * 60));
        let statement = "SELECT pg_catalog.undistribute_table($1::oid::regclass)";
        match tokio::time::timeout(
            timeout,
            execute_with_retries(ctx, &client, statement, &[&live.oid]),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => diags.error(format!("Cannot undistribute {table}"), e.message),
            Err(_) => diags.error(
                format!("Undistributing {table} did not finish"),
                format!("Not finished after {}s.", timeout.as_secs()),
            ),
        }
    }

    async fn import(&self, _ctx: &Context, id: &str, diags: &mut Diagnostics) -> Option<Value> {
        let table = match TableName::parse(id) {
            Ok(t) => t,
            Err(e) => {
                diags.error(
                    "Invalid import ID",
                    format!("Expected a table name such as public.nodestore_node: {e}"),
                );
                return None;
            }
        };
        let skeleton = object(vec![
            ("table", Value::string(id)),
            ("colocate_with", Value::Null),
            (crate::citus::connection::BLOCK_NAME, Value::Null),
        ]);
        let client = self.connect(&skeleton, diags).await?;
        let mut state = self.observe(&client, &skeleton, diags).await;
        // The table's shape as create_if_missing declares it, so that a
        // configuration with that block (the Sentry module has one) plans no
        // change after import.
        if let Some(fields) = state.as_mut().and_then(Value::as_object_mut) {
            if let Ok(Some(live)) = catalog::find(&client, &table).await {
                match catalog::shape(&client, live.oid).await {
                    Ok(shape) => {
                        fields.insert("create_if_missing".into(), shape);
                    }
                    Err(e) => diags.warning(
                        "Table shape not read",
                        format!("{table}: {e}; a create_if_missing block in the configuration will show as a change that alters nothing."),
                    ),
                }
            }
        }
        if state.is_none() && !diags.has_errors() {
            diags.error(
                "Nothing to import",
                format!("{table} does not exist or is not a hash-distributed table."),
            );
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(partners: &[&str], default_group: bool) -> Distribution {
        Distribution {
            column: "id".into(),
            shard_count: 64,
            colocation_id: 7,
            colocated_with: partners.iter().map(|s| s.to_string()).collect(),
            in_default_group: default_group,
        }
    }

    #[test]
    fn colocation_is_compared_by_meaning() {
        assert_eq!(observed_colocation(Some("none"), &live(&[], true)), "none");
        assert_eq!(
            observed_colocation(Some("default"), &live(&[], true)),
            "default"
        );
        assert_eq!(
            observed_colocation(Some("none"), &live(&["events"], true)),
            "events"
        );
        assert_eq!(
            observed_colocation(Some("public.events"), &live(&["events"], false)),
            "public.events"
        );
        assert_eq!(observed_colocation(None, &live(&[], false)), "none");
        assert_eq!(
            observed_colocation(None, &live(&["events"], true)),
            "default"
        );
    }

    #[test]
    fn a_bare_shard_count_change_still_passes_the_colocation() {
        let spec = TableSpec {
            table: TableName::parse("nodestore_node").unwrap(),
            column: "id".into(),
            shard_count: Some(32),
            colocate_with: "none".into(),
            concurrently: false,
        };
        let rewrite = rewrite_needed(&spec, &live(&[], false)).expect("a rewrite");
        assert_eq!(rewrite.shard_count, Some(32));
        assert_eq!(rewrite.colocate_with, "none");
        assert!(rewrite.column.is_none());
        let unchanged = TableSpec {
            shard_count: Some(64),
            ..spec
        };
        assert!(rewrite_needed(&unchanged, &live(&[], false)).is_none());
    }
}
