//! Read groups: pipelines whose sources read one stream together (`cdc`
//! pipelines naming one replication slot, which the server decodes once for
//! all of them).
//!
//! The engine finds them by the key each source gives ([`Source::read_group`]),
//! runs a group's selected pipelines at once (a run lets them past its
//! concurrency together; `runner stream` streams them together), hands their
//! reads one [`ReadGroup`], and confirms to the source only what every
//! pipeline of the group has committed: the controller's inactive ones too,
//! so that a paused pipeline resumes where it stopped.
//!
//! [`Source::read_group`]: weir_core::Source::read_group

use std::collections::HashMap;
use std::sync::Arc;

use tracing::warn;
use weir_core::{ControllerRow, LoadType, ReadGroup, Result};

use crate::attempt::Task;
use crate::run::Engine;

/// A read group as a run knows it.
pub(crate) struct Group {
    pub read: Arc<ReadGroup>,
    /// Every controller row whose source reads with it, active or not: (id, name).
    pub members: Vec<(i64, String)>,
}

/// Each grouped pipeline's group, by pipeline name.
#[derive(Default)]
pub(crate) struct Groups(HashMap<String, Arc<Group>>);

impl Groups {
    pub(crate) fn of(&self, pipeline: &str) -> Option<&Arc<Group>> {
        self.0.get(pipeline)
    }

    /// The other pipelines of `pipeline`'s group.
    pub(crate) fn peers(&self, pipeline: &str) -> Vec<&str> {
        self.of(pipeline)
            .map(|g| g.members.iter().map(|(_, n)| n.as_str()).filter(|n| *n != pipeline).collect())
            .unwrap_or_default()
    }
}

impl Engine {
    /// The read groups among `rows` (the whole controller: a group's inactive
    /// pipelines count). A row that does not build is left out; its run says why.
    pub(crate) fn read_groups(&self, rows: &[ControllerRow]) -> Groups {
        let mut by_key: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        for row in rows.iter().filter(|r| r.load_type.trim() == LoadType::Cdc.as_str()) {
            let Ok((prepared, _)) = self.prepare(row) else { continue };
            if let Task::Load { source, .. } = &prepared.task
                && let Some(key) = source.read_group()
            {
                by_key.entry(key).or_default().push((row.id, row.name.clone()));
            }
        }
        let mut groups = HashMap::new();
        for (key, members) in by_key {
            let group = Arc::new(Group { read: Arc::new(ReadGroup::new(key)), members });
            for (_, name) in &group.members {
                groups.insert(name.clone(), group.clone());
            }
        }
        Groups(groups)
    }

    /// The positions the other pipelines of `pipeline`'s group have committed
    /// (those that have one): the source keeps what the lowest still needs.
    pub(crate) async fn peer_positions(&self, groups: &Groups, pipeline: &str) -> Result<Vec<String>> {
        let mut positions = Vec::new();
        let Some(group) = groups.of(pipeline) else { return Ok(positions) };
        for (id, name) in group.members.iter().filter(|(_, n)| n != pipeline) {
            match self.meta().watermark(*id).await {
                Ok(Some(w)) => positions.push(w),
                Ok(None) => {}
                Err(e) => {
                    warn!(peer = %name, error = %e, "could not read a peer's position; confirming nothing this time");
                    return Err(e);
                }
            }
        }
        Ok(positions)
    }
}
