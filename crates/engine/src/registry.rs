//! Type name → factory, for every connector Weir ships. No global magic:
//! adding a connector means adding one line here.

use std::collections::BTreeMap;

use weir_core::traits::{SinkRegistration, SourceRegistration, TransformRegistration};
use weir_core::{Error, Result};

#[derive(Clone)]
pub struct Registry {
    sources: BTreeMap<&'static str, SourceRegistration>,
    sinks: BTreeMap<&'static str, SinkRegistration>,
    /// Source types that run work in the destination instead of reading (`dbt`).
    transforms: BTreeMap<&'static str, TransformRegistration>,
}

impl Registry {
    /// Every built-in connector.
    pub fn builtin() -> Self {
        let sources = [
            weir_source_parquet::REGISTRATION,
            weir_source_mysql::REGISTRATION,
            weir_source_elasticsearch::REGISTRATION,
            weir_source_postgres::REGISTRATION,
            weir_kafka::SOURCE,
        ];
        let sinks = [
            weir_sink_postgres::REGISTRATION,
            weir_delta::REGISTRATION,
            weir_sink_clickhouse::REGISTRATION,
            weir_sink_redis::REGISTRATION,
            weir_kafka::SINK,
        ];
        let transforms = [weir_transform_dbt::REGISTRATION];
        Self {
            sources: sources.into_iter().map(|r| (r.name, r)).collect(),
            sinks: sinks.into_iter().map(|r| (r.name, r)).collect(),
            transforms: transforms.into_iter().map(|r| (r.name, r)).collect(),
        }
    }

    /// What a `source_type` names: a source to read, or a transform to run.
    pub fn task(&self, name: &str) -> Result<TaskKind<'_>> {
        if let Some(t) = self.transforms.get(name) {
            return Ok(TaskKind::Transform(t));
        }
        self.sources.get(name).map(TaskKind::Load).ok_or_else(|| {
            Error::user(format!(
                "source_type `{name}` is not known; known source types: {}",
                known(self.sources.keys().chain(self.transforms.keys()))
            ))
        })
    }

    pub fn sink(&self, name: &str) -> Result<&SinkRegistration> {
        self.sinks.get(name).ok_or_else(|| {
            Error::user(format!(
                "destination_type `{name}` is not known; known destination types: {}",
                known(self.sinks.keys())
            ))
        })
    }
}

/// The two kinds of pipeline.
pub enum TaskKind<'a> {
    /// A source read into a sink.
    Load(&'a SourceRegistration),
    /// Work run inside the destination.
    Transform(&'a TransformRegistration),
}

fn known<'a>(names: impl Iterator<Item = &'a &'static str>) -> String {
    names.copied().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_list_the_known_ones() {
        let r = Registry::builtin();
        assert!(matches!(r.task("parquet"), Ok(TaskKind::Load(_))) && r.sink("postgres").is_ok());
        assert!(matches!(r.task("dbt"), Ok(TaskKind::Transform(_))));
        let err = r.task("parquett").err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            err,
            "source_type `parquett` is not known; known source types: elasticsearch, kafka, mysql, parquet, postgres, dbt"
        );
        assert!(r.sink("oracle").is_err());
    }
}
