//! Type name → factory, for every connector Weir ships. No global magic:
//! adding a connector means adding one line here.

use std::collections::BTreeMap;

use weir_core::traits::{SinkRegistration, SourceRegistration};
use weir_core::{Error, Result};

#[derive(Clone)]
pub struct Registry {
    sources: BTreeMap<&'static str, SourceRegistration>,
    sinks: BTreeMap<&'static str, SinkRegistration>,
}

impl Registry {
    /// Every built-in connector.
    pub fn builtin() -> Self {
        let sources = [
            weir_source_parquet::REGISTRATION,
            weir_source_mysql::REGISTRATION,
            weir_source_elasticsearch::REGISTRATION,
        ];
        let sinks = [weir_sink_postgres::REGISTRATION, weir_delta::REGISTRATION];
        Self {
            sources: sources.into_iter().map(|r| (r.name, r)).collect(),
            sinks: sinks.into_iter().map(|r| (r.name, r)).collect(),
        }
    }

    pub fn source(&self, name: &str) -> Result<&SourceRegistration> {
        self.sources.get(name).ok_or_else(|| {
            Error::user(format!(
                "source_type `{name}` is not known; known source types: {}",
                known(self.sources.keys())
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

fn known<'a>(names: impl Iterator<Item = &'a &'static str>) -> String {
    names.copied().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_list_the_known_ones() {
        let r = Registry::builtin();
        assert!(r.source("parquet").is_ok() && r.sink("postgres").is_ok());
        let err = r.source("parquett").err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err, "source_type `parquett` is not known; known source types: elasticsearch, mysql, parquet");
        assert!(r.sink("oracle").is_err());
    }
}
