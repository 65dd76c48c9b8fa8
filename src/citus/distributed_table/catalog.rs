//! What the coordinator's catalog says about one table. A read costs the
//! same few queries whatever the shard count: catalog joins on the
//! coordinator, and one size query that Citus answers with one round trip
//! per worker.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::sql::SqlError;

use super::table_name::TableName;

/// A table's Citus hash distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    pub column: String,
    pub shard_count: i64,
    pub colocation_id: i32,
    /// Other tables in the same colocation group, as `regclass` text.
    pub colocated_with: Vec<String>,
    /// Whether the group is the one `colocate_with => 'default'` picks for
    /// the table's shard count and column type (the oldest such group).
    pub in_default_group: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTable {
    pub oid: u32,
    /// `None` when the table is not a hash-distributed Citus table.
    pub distribution: Option<Distribution>,
}

/// Placements of the table on one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePlacements {
    pub shards: i64,
    /// `None` when the sizes could not be read (a worker is down).
    pub bytes: Option<i64>,
}

/// Whether the citus extension exists on this server yet.
pub async fn citus_installed(client: &Client) -> Result<bool, SqlError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn find(client: &Client, table: &TableName) -> Result<Option<LiveTable>, SqlError> {
    let row = client
        .query_opt(
            "SELECT c.oid, p.partmethod::text = 'h', \
                    pg_catalog.column_to_column_name(p.logicalrelid, p.partkey), p.colocationid, \
                    (SELECT count(*) FROM pg_catalog.pg_dist_shard s WHERE s.logicalrelid = c.oid)::bigint, \
                    (SELECT coalesce(array_agg(q.logicalrelid::regclass::text ORDER BY 1), '{}') \
                       FROM pg_catalog.pg_dist_partition q \
                      WHERE q.colocationid = p.colocationid AND q.logicalrelid <> c.oid), \
                    (SELECT min(d.colocationid) FROM pg_catalog.pg_dist_colocation d \
                       JOIN pg_catalog.pg_dist_colocation own ON own.colocationid = p.colocationid \
                      WHERE d.shardcount = own.shardcount AND d.replicationfactor = own.replicationfactor \
                        AND d.distributioncolumntype = own.distributioncolumntype \
                        AND d.distributioncolumncollation = own.distributioncolumncollation) = p.colocationid \
               FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               LEFT JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid = c.oid \
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&table.schema, &table.name],
        )
        .await?;
    Ok(row.map(|r| {
        let hash: Option<bool> = r.get(1);
        LiveTable {
            oid: r.get(0),
            distribution: (hash == Some(true)).then(|| Distribution {
                column: r.get(2),
                shard_count: r.get(4),
                colocation_id: r.get(3),
                colocated_with: r.get(5),
                in_default_group: r.get::<_, Option<bool>>(6).unwrap_or(false),
            }),
        }
    }))
}

/// The type of `column` in the table, without modifiers (`character varying`,
/// not `character varying(40)`: colocation compares types, not lengths);
/// `None` when there is no such column.
pub async fn column_type(
    client: &Client,
    oid: u32,
    column: &str,
) -> Result<Option<String>, SqlError> {
    let row = client
        .query_opt(
            "SELECT pg_catalog.format_type(atttypid, NULL) FROM pg_catalog.pg_attribute \
              WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
            &[&oid, &column],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Placements per worker `host:port`, with sizes when every worker answers.
pub async fn placements(
    client: &Client,
    oid: u32,
) -> Result<(BTreeMap<String, NodePlacements>, Option<SqlError>), SqlError> {
    let with_sizes = client
        .query(
            "WITH sizes AS (SELECT shard_id, max(size) AS size FROM pg_catalog.citus_shard_sizes() GROUP BY shard_id) \
             SELECT n.nodename || ':' || n.nodeport, count(*)::bigint, \
                    CASE WHEN count(sizes.shard_id) = count(*) THEN coalesce(sum(sizes.size), 0) END::bigint \
               FROM pg_catalog.pg_dist_shard s \
               JOIN pg_catalog.pg_dist_placement p USING (shardid) \
               JOIN pg_catalog.pg_dist_node n ON n.groupid = p.groupid AND n.noderole = 'primary' \
               LEFT JOIN sizes ON sizes.shard_id = s.shardid \
              WHERE s.logicalrelid = $1::oid::regclass GROUP BY 1",
            &[&oid],
        )
        .await;
    match with_sizes {
        Ok(rows) => {
            // citus_shard_sizes() leaves out the shards of a worker it cannot reach.
            let placements: BTreeMap<String, NodePlacements> = rows
                .iter()
                .map(|r| {
                    (
                        r.get(0),
                        NodePlacements {
                            shards: r.get(1),
                            bytes: r.get(2),
                        },
                    )
                })
                .collect();
            let without_sizes: Vec<&str> = placements
                .iter()
                .filter(|(_, p)| p.bytes.is_none())
                .map(|(n, _)| n.as_str())
                .collect();
            let problem = (!without_sizes.is_empty()).then(|| SqlError {
                message: format!("no sizes from {}", without_sizes.join(", ")),
                code: None,
            });
            Ok((placements, problem))
        }
        Err(e) => {
            // A worker that is down cannot report sizes; counts live on the coordinator.
            let rows = client
                .query(
                    "SELECT n.nodename || ':' || n.nodeport, count(*)::bigint \
                       FROM pg_catalog.pg_dist_shard s \
                       JOIN pg_catalog.pg_dist_placement p USING (shardid) \
                       JOIN pg_catalog.pg_dist_node n ON n.groupid = p.groupid AND n.noderole = 'primary' \
                      WHERE s.logicalrelid = $1::oid::regclass GROUP BY 1",
                    &[&oid],
                )
                .await?;
            Ok((
                rows.iter()
                    .map(|r| {
                        (
                            r.get(0),
                            NodePlacements {
                                shards: r.get(1),
                                bytes: None,
                            },
                        )
                    })
                    .collect(),
                Some(e.into()),
            ))
        }
    }
}

/// The distribution column type of a distributed table, for colocation checks.
pub async fn distribution_column_type(
    client: &Client,
    table: &TableName,
) -> Result<Option<String>, SqlError> {
    let Some(live) = find(client, table).await? else {
        return Ok(None);
    };
    let Some(distribution) = live.distribution else {
        return Ok(None);
    };
    column_type(client, live.oid, &distribution.column).await
}

/// The live table's shape as a `create_if_missing` block would declare it:
/// columns in order with the server's type names (`format_type`), the
/// primary key in key order, and the plain column indexes other than the
/// key's, oldest first (the order `create_if_missing` creates them in). What
/// an import records, so that a configuration declaring the same shape plans
/// no change.
pub async fn shape(client: &Client, oid: u32) -> Result<crate::cty::Value, SqlError> {
    use crate::cty::Value;
    let columns = client
        .query(
            "SELECT attname::text, pg_catalog.format_type(atttypid, atttypmod), attnotnull \
               FROM pg_catalog.pg_attribute \
              WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await?;
    let indexes = client
        .query(
            "SELECT i.indisprimary, \
                    array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, n) \
                            JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                           ORDER BY k.n) \
               FROM pg_catalog.pg_index i \
              WHERE i.indrelid = $1 AND (i.indisprimary OR NOT i.indisunique) \
                AND i.indexprs IS NULL AND i.indpred IS NULL AND NOT (0 = ANY (i.indkey::int2[])) \
              ORDER BY i.indisprimary DESC, i.indexrelid",
            &[&oid],
        )
        .await?;
    let strings = |names: Vec<String>| Value::List(names.into_iter().map(Value::string).collect());
    let mut primary_key = Value::Null;
    let mut plain = Vec::new();
    for row in &indexes {
        let names: Vec<String> = row.get(1);
        if row.get::<_, bool>(0) {
            primary_key = strings(names);
        } else {
            plain.push(strings(names));
        }
    }
    let column = Value::List(
        columns
            .iter()
            .map(|r| {
                Value::Object(
                    [
                        ("name".to_string(), Value::string(r.get::<_, String>(0))),
                        ("type".to_string(), Value::string(r.get::<_, String>(1))),
                        ("nullable".to_string(), Value::Bool(!r.get::<_, bool>(2))),
                    ]
                    .into(),
                )
            })
            .collect(),
    );
    Ok(Value::Object(
        [
            ("column".to_string(), column),
            ("primary_key".to_string(), primary_key),
            (
                "indexes".to_string(),
                if plain.is_empty() { Value::Null } else { Value::List(plain) },
            ),
        ]
        .into(),
    ))
}
