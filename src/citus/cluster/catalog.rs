//! What the coordinator's catalog says about the cluster, read with a fixed
//! number of queries whatever the number of nodes or shards.

use std::collections::{BTreeMap, HashMap};

use tokio_postgres::Client;

use crate::sql::{quote_ident, quote_literal, SqlError};

use super::model::NodeAddress;

/// A row of `pg_dist_node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistNode {
    pub node_id: i32,
    pub group_id: i32,
    pub address: NodeAddress,
    pub is_primary: bool,
    pub is_active: bool,
    pub should_have_shards: bool,
}

/// The database-level setting where the provider records worker names, so an
/// import gives workers the names the configuration uses.
const NODE_NAMES_SETTING: &str = "shardform.node_names";

/// The installed citus extension's version, `None` when it is not created.
pub async fn citus_version(client: &Client) -> Result<Option<String>, SqlError> {
    let row = client
        .query_opt(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'citus'",
            &[],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

pub async fn nodes(client: &Client) -> Result<Vec<DistNode>, SqlError> {
    let rows = client
        .query(
            "SELECT nodeid, groupid, nodename, nodeport, noderole::text = 'primary', isactive, shouldhaveshards \
             FROM pg_catalog.pg_dist_node ORDER BY nodeid",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DistNode {
            node_id: r.get(0),
            group_id: r.get(1),
            address: NodeAddress::new(r.get::<_, String>(2), r.get::<_, i32>(3) as u16),
            is_primary: r.get(4),
            is_active: r.get(5),
            should_have_shards: r.get(6),
        })
        .collect())
}

/// Placements of distributed (not reference) shards per group; secondaries
/// share their primary's group. Reference tables have a copy on every node
/// and never keep a node from leaving.
pub async fn placements_per_group(client: &Client) -> Result<HashMap<i32, i64>, SqlError> {
    let rows = client
        .query(
            "SELECT p.groupid, count(*)::bigint FROM pg_catalog.pg_dist_placement p \
             JOIN pg_catalog.pg_dist_shard s USING (shardid) \
             JOIN pg_catalog.pg_dist_partition t ON t.logicalrelid = s.logicalrelid \
             WHERE t.partmethod <> 'n' GROUP BY p.groupid",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Distributed tables with placements in `group_id`, for messages.
pub async fn tables_in_group(client: &Client, group_id: i32) -> Result<Vec<String>, SqlError> {
    let rows = client
        .query(
            "SELECT DISTINCT s.logicalrelid::regclass::text FROM pg_catalog.pg_dist_placement p \
             JOIN pg_catalog.pg_dist_shard s USING (shardid) \
             JOIN pg_catalog.pg_dist_partition t ON t.logicalrelid = s.logicalrelid \
             WHERE p.groupid = $1 AND t.partmethod <> 'n' ORDER BY 1",
            &[&group_id],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Worker names recorded by an earlier apply, by `host:port`.
pub async fn node_names(client: &Client) -> Result<BTreeMap<String, String>, SqlError> {
    let row = client
        .query_one("SELECT current_setting($1, true)", &[&NODE_NAMES_SETTING])
        .await?;
    let text: Option<String> = row.get(0);
    Ok(text
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

/// Records worker names on the coordinator's database. `ALTER DATABASE` takes
/// no parameters, so the database is quoted as an identifier and the JSON as a
/// literal; DDL propagation is off because the names concern the coordinator only.
pub async fn record_node_names(
    client: &mut Client,
    names: &BTreeMap<String, String>,
) -> Result<(), SqlError> {
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .await?
        .get(0);
    let json = serde_json::to_string(names).expect("names serialize");
    let transaction = client.transaction().await?;
    transaction
        .execute("SET LOCAL citus.enable_ddl_propagation TO off", &[])
        .await?;
    let statement = format!(
        "ALTER DATABASE {} SET {} TO {}",
        quote_ident(&database),
        NODE_NAMES_SETTING,
        quote_literal(&json)
    );
    transaction.batch_execute(&statement).await?;
    transaction.commit().await?;
    Ok(())
}
