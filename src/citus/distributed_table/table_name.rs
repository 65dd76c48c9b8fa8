//! Schema-qualified table names as users write them: `nodestore_node`,
//! `public.nodestore_node`, `"Odd ""Name"""."t;1"`. Parsed into parts and
//! only ever sent to PostgreSQL as bind parameters or quoted identifiers.

use std::fmt;

use crate::sql::quote_qualified;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    /// Unquoted parts fold to lower case, as PostgreSQL does; a missing schema is `public`.
    pub fn parse(text: &str) -> Result<TableName, String> {
        let parts = split_identifiers(text)?;
        match parts.as_slice() {
            [name] => Ok(TableName {
                schema: "public".into(),
                name: name.clone(),
            }),
            [schema, name] => Ok(TableName {
                schema: schema.clone(),
                name: name.clone(),
            }),
            _ => Err(format!("expected `table` or `schema.table`, got {text:?}")),
        }
    }

    /// `"schema"."name"`, for DDL.
    pub fn quoted(&self) -> String {
        quote_qualified(&self.schema, &self.name)
    }
}

impl fmt::Display for TableName {
    /// The canonical form: parts quoted only where PostgreSQL needs it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            display_part(&self.schema),
            display_part(&self.name)
        )
    }
}

fn display_part(part: &str) -> String {
    let plain = part.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        part.to_string()
    } else {
        format!("\"{}\"", part.replace('"', "\"\""))
    }
}

fn split_identifiers(text: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(format!("unterminated quoted identifier in {text:?}")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return Err(format!(
                        "{text:?} is not a table name: quote parts with other characters, e.g. \"\\\"My Table\\\"\""
                    ));
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(format!("empty name part in {text:?}"));
        }
        if part.len() > 63 {
            return Err(format!(
                "{part:?} is longer than PostgreSQL's 63-byte identifiers"
            ));
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(c) => return Err(format!("unexpected {c:?} in {text:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_like_postgresql() {
        assert_eq!(
            TableName::parse("nodestore_node").unwrap(),
            TableName {
                schema: "public".into(),
                name: "nodestore_node".into()
            }
        );
        assert_eq!(
            TableName::parse("Sentry.Nodestore").unwrap().to_string(),
            "sentry.nodestore"
        );
        let odd = TableName::parse(r#""My ""Schema""".";DROP TABLE x;--""#).unwrap();
        assert_eq!(odd.schema, "My \"Schema\"");
        assert_eq!(odd.name, ";DROP TABLE x;--");
        assert_eq!(odd.quoted(), r#""My ""Schema""".";DROP TABLE x;--""#);
        assert_eq!(odd.to_string(), r#""My ""Schema""".";DROP TABLE x;--""#);
    }

    #[test]
    fn malformed_names_are_rejected() {
        for bad in ["", "a.b.c", "t;drop", "\"open", "a..b", "x y"] {
            assert!(TableName::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
