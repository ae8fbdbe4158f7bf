//! CREATE TABLE statements that load a schema's exported files into a warehouse.

use std::fmt::Write as _;
use std::str::FromStr;

use auditsync_core::{ColumnType, Schema};

/// A SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Amazon Athena: an external table over the export tree, partitioned by the date in the
    /// key (partition projection, no crawler needed).
    Athena,
    /// Google BigQuery.
    Bigquery,
    /// Snowflake.
    Snowflake,
    /// DuckDB.
    Duckdb,
}

impl Dialect {
    /// Every dialect's name.
    pub const NAMES: &'static [&'static str] = &["athena", "bigquery", "snowflake", "duckdb"];
}

impl FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "athena" => Dialect::Athena,
            "bigquery" => Dialect::Bigquery,
            "snowflake" => Dialect::Snowflake,
            "duckdb" => Dialect::Duckdb,
            other => {
                return Err(format!(
                    "unknown dialect `{other}`; known: {}",
                    Dialect::NAMES.join(", ")
                ))
            }
        })
    }
}

/// The file format the table reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// CSV with a header row; JSON and array columns hold JSON text.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

impl FromStr for FileKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "csv" => Ok(FileKind::Csv),
            "ndjson" => Ok(FileKind::Ndjson),
            other => Err(format!("unknown format `{other}`; known: csv, ndjson")),
        }
    }
}

/// What the statement is for.
#[derive(Debug, Clone)]
pub struct DdlOptions {
    /// Table name (may be qualified, e.g. `dataset.audit` for BigQuery).
    pub table: String,
    /// The exported files' format.
    pub format: FileKind,
    /// Athena: the export tree, `s3://bucket/<prefix>/<namespace>/audit/`.
    pub location: Option<String>,
}

fn quote(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::Athena | Dialect::Bigquery => format!("`{}`", name.replace('`', "")),
        Dialect::Snowflake | Dialect::Duckdb => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

fn quote_table(dialect: Dialect, table: &str) -> String {
    table
        .split('.')
        .map(|part| quote(dialect, part))
        .collect::<Vec<_>>()
        .join(".")
}

/// The SQL type a column is declared as.
pub fn sql_type(dialect: Dialect, format: FileKind, ty: ColumnType) -> &'static str {
    use ColumnType::*;
    use Dialect::*;
    match (dialect, ty) {
        (_, String) => match dialect {
            Snowflake | Duckdb => "VARCHAR",
            _ => "STRING",
        },
        (Bigquery, Integer | TimestampMillis) => "INT64",
        (Snowflake, Integer | TimestampMillis) => "NUMBER(19,0)",
        (_, Integer | TimestampMillis) => "BIGINT",
        (Bigquery, Boolean) => "BOOL",
        (_, Boolean) => "BOOLEAN",
        // Athena's CSV SerDe reads dates and timestamps only in epoch form; text stays text.
        (Athena, Timestamp | Date | Json | StringArray) if format == FileKind::Csv => "STRING",
        (Athena, Timestamp) => "TIMESTAMP",
        (Snowflake, Timestamp) => "TIMESTAMP_NTZ(3)",
        (_, Timestamp) => "TIMESTAMP",
        (_, Date) => "DATE",
        (Athena, StringArray) => "ARRAY<STRING>",
        (Bigquery, StringArray) if format == FileKind::Ndjson => "ARRAY<STRING>",
        (Duckdb, StringArray) if format == FileKind::Ndjson => "VARCHAR[]",
        (Snowflake, Json | StringArray) => "VARIANT",
        (Athena, Json) => "STRING",
        (_, Json | StringArray) => "JSON",
    }
}

/// The CREATE TABLE statement for `schema`'s exported files.
pub fn create_table(schema: &dyn Schema, dialect: Dialect, options: &DdlOptions) -> String {
    let format = match options.format {
        FileKind::Csv => "csv",
        FileKind::Ndjson => "ndjson",
    };
    let mut sql = format!(
        "-- auditsync schema `{}` version {}, {format} files\n",
        schema.name(),
        schema.version()
    );
    let table = quote_table(dialect, &options.table);
    let create = match dialect {
        Dialect::Athena => "CREATE EXTERNAL TABLE IF NOT EXISTS",
        _ => "CREATE TABLE IF NOT EXISTS",
    };
    let _ = writeln!(sql, "{create} {table} (");
    let columns = schema.columns();
    for (i, column) in columns.iter().enumerate() {
        let comma = if i + 1 < columns.len() { "," } else { "" };
        let _ = writeln!(
            sql,
            "  {} {}{comma}",
            quote(dialect, &column.name),
            sql_type(dialect, options.format, column.ty)
        );
    }
    sql.push(')');
    if dialect == Dialect::Athena {
        let location = options
            .location
            .as_deref()
            .unwrap_or("s3://BUCKET/PREFIX/NAMESPACE/audit/");
        let location = format!("{}/", location.trim_end_matches('/'));
        sql.push_str(
            "\nPARTITIONED BY (`year` STRING, `month` STRING, `day` STRING, `hour` STRING)\n",
        );
        match options.format {
            FileKind::Csv => sql.push_str(
                "ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'\n\
                 WITH SERDEPROPERTIES ('separatorChar' = ',', 'quoteChar' = '\"')\n",
            ),
            FileKind::Ndjson => {
                sql.push_str("ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\n")
            }
        }
        let _ = writeln!(sql, "LOCATION '{location}'");
        sql.push_str("TBLPROPERTIES (\n");
        if options.format == FileKind::Csv {
            sql.push_str("  'skip.header.line.count' = '1',\n");
        }
        sql.push_str(
            "  'projection.enabled' = 'true',\n\
             \x20 'projection.year.type' = 'integer', 'projection.year.range' = '1970,2999', 'projection.year.digits' = '4',\n\
             \x20 'projection.month.type' = 'integer', 'projection.month.range' = '1,12', 'projection.month.digits' = '2',\n\
             \x20 'projection.day.type' = 'integer', 'projection.day.range' = '1,31', 'projection.day.digits' = '2',\n\
             \x20 'projection.hour.type' = 'integer', 'projection.hour.range' = '0,23', 'projection.hour.digits' = '2',\n",
        );
        let _ = write!(
            sql,
            "  'storage.location.template' = '{location}${{year}}/${{month}}/${{day}}/${{hour}}/'\n)"
        );
    }
    sql.push_str(";\n");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UeventsSchema;

    fn options(format: FileKind) -> DdlOptions {
        DdlOptions {
            table: "audit.uevents".into(),
            format,
            location: Some("s3://b/p/ns/audit".into()),
        }
    }

    #[test]
    fn every_dialect_declares_every_column_in_order() {
        let schema = UeventsSchema::new();
        for name in Dialect::NAMES {
            let dialect: Dialect = name.parse().unwrap();
            for format in [FileKind::Csv, FileKind::Ndjson] {
                let sql = create_table(&schema, dialect, &options(format));
                let mut at = 0;
                for column in schema.columns() {
                    let found = sql[at..].find(&column.name).unwrap_or_else(|| {
                        panic!("{name}: `{}` missing or out of order:\n{sql}", column.name)
                    });
                    at += found;
                }
                assert!(sql.trim_end().ends_with(';'), "{sql}");
            }
        }
    }

    #[test]
    fn types_follow_the_dialect_and_the_file_format() {
        let schema = UeventsSchema::new();
        let duck = create_table(&schema, Dialect::Duckdb, &options(FileKind::Csv));
        assert!(duck.contains("\"createdAt\" BIGINT"), "{duck}");
        assert!(duck.contains("\"nameHints\" JSON"), "{duck}");
        let duck = create_table(&schema, Dialect::Duckdb, &options(FileKind::Ndjson));
        assert!(duck.contains("\"nameHints\" VARCHAR[]"), "{duck}");
        let bq = create_table(&schema, Dialect::Bigquery, &options(FileKind::Csv));
        assert!(bq.contains("`audit`.`uevents`") && bq.contains("`responseCode` INT64"));
        let athena = create_table(&schema, Dialect::Athena, &options(FileKind::Ndjson));
        assert!(athena.contains("LOCATION 's3://b/p/ns/audit/'"), "{athena}");
        assert!(
            athena.contains("'s3://b/p/ns/audit/${year}/${month}/${day}/${hour}/'"),
            "{athena}"
        );
        assert!(athena.contains("`nameHints` ARRAY<STRING>"), "{athena}");
        assert!("oracle".parse::<Dialect>().unwrap_err().contains("duckdb"));
    }
}
