//! SQL against test instances: an async client for async tests, and a
//! blocking simple-query helper for everything else.

use std::error::Error as _;
use std::thread;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Result rows as text, NULL as `None`, from every statement of a query.
pub type Rows = Vec<Vec<Option<String>>>;

/// A connected client; its connection is driven by a task on the current
/// tokio runtime.
pub async fn connect(conninfo: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .map_err(|e| format!("cannot connect with `{conninfo}`: {}", describe_error(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("harness: connection error: {}", describe_error(&e));
        }
    });
    Ok(client)
}

/// Runs `query` with the simple query protocol (several statements allowed)
/// on a fresh connection. It uses its own runtime on its own thread, so it
/// works in plain tests and inside async ones alike.
pub fn simple_query_blocking(conninfo: &str, query: &str) -> Result<Rows, String> {
    thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cannot build a tokio runtime")
                    .block_on(simple_query(conninfo, query))
            })
            .join()
            .expect("the SQL thread panicked")
    })
}

async fn simple_query(conninfo: &str, query: &str) -> Result<Rows, String> {
    let client = connect(conninfo).await?;
    let messages = client
        .simple_query(query)
        .await
        .map_err(|e| describe_error(&e))?;
    Ok(text_rows(&messages))
}

fn text_rows(messages: &[SimpleQueryMessage]) -> Rows {
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The server's full message (severity, SQLSTATE, detail, hint) for database
/// errors; the cause chain for others. tokio-postgres' Display shows only
/// "db error".
pub fn describe_error(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            text.push_str(&format!("\nDETAIL: {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("\nHINT: {hint}"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    text
}
