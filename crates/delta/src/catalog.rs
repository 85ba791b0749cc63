//! DDL that registers the catalog's Delta tables in other engines: Spark's Hive
//! Metastore (`CREATE TABLE … USING DELTA LOCATION …`) or Trino's Delta Lake
//! connector (`system.register_table`). Both read the schema from the log.

/// The engine the DDL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Spark,
    Trino,
}

/// A table to register.
#[derive(Debug, Clone, Copy)]
pub struct Registration<'a> {
    pub schema_name: &'a str,
    pub table_name: &'a str,
    pub location: &'a str,
}

/// One statement per schema, then one per table, `;`-terminated.
pub fn ddl(tables: &[Registration<'_>], dialect: Dialect) -> String {
    let mut out = String::new();
    if dialect == Dialect::Trino {
        out.push_str(
            "-- Trino's Delta Lake connector (catalog `delta`); needs delta.register-table-procedure.enabled=true\n",
        );
    }
    let mut schemas: Vec<&str> = tables.iter().map(|t| t.schema_name).collect();
    schemas.sort_unstable();
    schemas.dedup();
    for schema in schemas {
        let line = match dialect {
            Dialect::Spark => format!("CREATE SCHEMA IF NOT EXISTS {};\n", backtick(schema)),
            Dialect::Trino => format!("CREATE SCHEMA IF NOT EXISTS delta.{};\n", double_quote(schema)),
        };
        out.push_str(&line);
    }
    for t in tables {
        let line = match dialect {
            Dialect::Spark => format!(
                "CREATE TABLE IF NOT EXISTS {}.{} USING DELTA LOCATION {};\n",
                backtick(t.schema_name),
                backtick(t.table_name),
                literal(&spark_location(t.location))
            ),
            Dialect::Trino => format!(
                "CALL delta.system.register_table(schema_name => {}, table_name => {}, table_location => {});\n",
                literal(t.schema_name),
                literal(t.table_name),
                literal(t.location)
            ),
        };
        out.push_str(&line);
    }
    out
}

/// Spark reaches S3 through Hadoop's `s3a://` file system.
fn spark_location(location: &str) -> String {
    match location.strip_prefix("s3://") {
        Some(rest) => format!("s3a://{rest}"),
        None => location.to_owned(),
    }
}

fn backtick(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn double_quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: &[Registration<'static>] = &[
        Registration { schema_name: "bronze", table_name: "orders", location: "s3://lake/wh/bronze/orders" },
        Registration { schema_name: "bronze", table_name: "people", location: "file:///data/lake/bronze/people" },
    ];

    #[test]
    fn spark_ddl_registers_each_table_by_location() {
        assert_eq!(
            ddl(TABLES, Dialect::Spark),
            "CREATE SCHEMA IF NOT EXISTS `bronze`;\n\
             CREATE TABLE IF NOT EXISTS `bronze`.`orders` USING DELTA LOCATION 's3a://lake/wh/bronze/orders';\n\
             CREATE TABLE IF NOT EXISTS `bronze`.`people` USING DELTA LOCATION 'file:///data/lake/bronze/people';\n"
        );
    }

    #[test]
    fn trino_ddl_calls_register_table() {
        let out = ddl(&TABLES[..1], Dialect::Trino);
        assert!(out.contains("CREATE SCHEMA IF NOT EXISTS delta.\"bronze\";"));
        assert!(out.contains(
            "CALL delta.system.register_table(schema_name => 'bronze', table_name => 'orders', \
             table_location => 's3://lake/wh/bronze/orders');"
        ));
    }
}
