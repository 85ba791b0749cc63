//! Weir transform `dbt`: build a dbt project's models in a PostgreSQL
//! destination, as one pipeline of a run.
//!
//! A controller row with `source_type = 'dbt'` names the project folder in
//! `data_source` and the warehouse in `destination_connection` (none: the
//! metadata database, as for a `postgres` load). Weir writes a private
//! `profiles.yml` for that connection, with the password passed to dbt in an
//! environment variable (never in a file), runs `dbt build` (or `options.command`)
//! with `options.select`, reads dbt's `run_results.json` and reports the models
//! built, the tests passed and the rows affected, or the first node that failed
//! and dbt's message for it. `load_type = 'full'` adds `--full-refresh`.
//!
//! dbt commits model by model: a model that failed leaves the table it would
//! have replaced as it was (dbt builds into a temporary relation and swaps),
//! and the models downstream of it are skipped.

mod profile;
mod results;
mod transform;

use weir_core::{DefaultConnection, Error, Result, TransformContext, TransformRegistration};

pub use results::{Node, RunResults};
pub use transform::DbtTransform;

/// How the engine finds this transform: `source_type = 'dbt'`.
pub const REGISTRATION: TransformRegistration = TransformRegistration {
    name: "dbt",
    option_keys: DbtOptions::KEYS,
    destinations: &["postgres"],
    default_connection: DefaultConnection::MetadataDb,
    build,
};

/// `options` keys of a dbt pipeline.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbtOptions {
    /// dbt node selection (`--select`): a string (`"tag:gold staging.orders+"`) or a list.
    pub select: Option<Selection>,
    /// Nodes to leave out (`--exclude`).
    pub exclude: Option<Selection>,
    /// The dbt target name (`--target`; default `weir`). With Weir's generated
    /// profile it is the name models see as `target.name`; with `profiles_dir`,
    /// the output of your own profile to use.
    pub target: Option<String>,
    /// `build` (default: models, tests, seeds and snapshots in dependency
    /// order), `run`, `test`, `seed` or `snapshot`.
    pub command: Option<String>,
    /// dbt's threads (default 4).
    pub threads: Option<u32>,
    /// Extra `--vars`; Weir always sets `run_date` (`YYYY-MM-DD`), `weir_run_id` and `weir_pipeline`.
    pub vars: Option<serde_json::Map<String, serde_json::Value>>,
    /// A folder with your own `profiles.yml`: used instead of the profile Weir
    /// writes from `destination_connection`.
    pub profiles_dir: Option<String>,
}

/// One selector or several.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Selection {
    One(String),
    Many(Vec<String>),
}

impl Selection {
    fn args(&self) -> Vec<String> {
        let all = match self {
            Selection::One(s) => vec![s.clone()],
            Selection::Many(v) => v.clone(),
        };
        all.iter().flat_map(|s| s.split_whitespace()).map(str::to_owned).collect()
    }
}

impl DbtOptions {
    pub const KEYS: &'static [&'static str] =
        &["select", "exclude", "target", "command", "threads", "vars", "profiles_dir"];
    const COMMANDS: &'static [&'static str] = &["build", "run", "test", "seed", "snapshot"];
}

fn build(ctx: TransformContext<'_>) -> Result<Box<dyn weir_core::Transform>> {
    let options: DbtOptions = weir_core::options::parse(ctx.options, DbtOptions::KEYS)?;
    if let Some(command) = &options.command
        && !DbtOptions::COMMANDS.contains(&command.as_str())
    {
        return Err(Error::user(format!(
            "options.command `{command}` is not a dbt command Weir runs; use one of {}",
            DbtOptions::COMMANDS.join(", ")
        )));
    }
    let project = ctx
        .pipeline
        .data_source
        .clone()
        .ok_or_else(|| Error::user("data_source is empty; a dbt pipeline names its dbt project folder there"))?;
    let connection = match &options.profiles_dir {
        Some(_) => None,
        None => {
            let conn =
                ctx.connection.ok_or_else(|| Error::internal("the dbt transform was built without a connection"))?;
            if !matches!(conn.scheme(), "postgres" | "postgresql") {
                return Err(Error::user(format!(
                    "destination_connection `{}` is a {}:// URL; dbt runs in a postgres destination",
                    conn.name(),
                    conn.scheme()
                )));
            }
            Some(conn)
        }
    };
    Ok(Box::new(DbtTransform::new(project.into(), ctx.pipeline.schema_name.as_str().to_owned(), connection, options)))
}
