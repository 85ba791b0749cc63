//! Table maintenance: compact small files (OPTIMIZE), then delete files no
//! version within the retention period needs (VACUUM), then drop Weir's commit
//! markers that no committed transaction points at any more.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::Serialize;
use weir_core::{Error, Result};

use crate::error::{delta_error, store_error};
use crate::location::TableLocation;
use crate::sink::committed_load;

#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// Keep the files that versions of the last `retention` need (time travel, slow readers).
    pub retention: Duration,
    /// Compact into files of about this size.
    pub target_file_size: Option<NonZeroU64>,
}

/// What maintenance did to one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MaintainReport {
    pub files_compacted: u64,
    pub files_written: u64,
    pub files_vacuumed: u64,
    pub markers_removed: u64,
    pub version: i64,
}

pub async fn maintain(location: &TableLocation, options: &MaintainOptions) -> Result<MaintainReport> {
    let what = |op: &str| format!("{op} the Delta table at {}", location.display());
    let table = location.open().await?;
    // delta-rs 1.1 cannot rewrite the files of a table with column mapping: vacuum only.
    let (table, (files_compacted, files_written)) = if crate::sink::column_mapped(&table) {
        tracing::info!(table = %location.display(), "the table uses column mapping, which delta-rs cannot compact; vacuuming only");
        (table, (0, 0))
    } else {
        let mut optimize = table.optimize();
        if let Some(size) = options.target_file_size {
            optimize = optimize.with_target_size(size);
        }
        let (table, compacted) = optimize.await.map_err(|e| delta_error(e, &what("compacting")))?;
        (table, (compacted.num_files_removed, compacted.num_files_added))
    };
    let retention =
        chrono::Duration::from_std(options.retention).map_err(|_| Error::user("the retention period is too long"))?;
    let (table, vacuumed) = table
        .vacuum()
        .with_retention_period(retention)
        // The caller chose the retention: below the table's own minimum is allowed.
        .with_enforce_retention_duration(false)
        .await
        .map_err(|e| delta_error(e, &what("vacuuming")))?;
    let markers_removed = prune_markers(&table).await?;
    Ok(MaintainReport {
        files_compacted,
        files_written,
        files_vacuumed: vacuumed.files_deleted.len() as u64,
        markers_removed,
        version: table.version().unwrap_or_default() as i64,
    })
}

/// Delete `_weir/<pipeline>/<seq>.json` markers older than the pipeline's
/// committed load: only the committed one can ever be read again.
async fn prune_markers(table: &deltalake::DeltaTable) -> Result<u64> {
    let store = table.object_store();
    let markers: Vec<_> = store
        .list(Some(&Path::from("_weir")))
        .try_collect()
        .await
        .map_err(|e| store_error(e, "listing Weir's commit markers"))?;
    // Each pipeline's committed load, looked up once however many markers it has.
    let mut committed: HashMap<String, Option<i64>> = HashMap::new();
    let mut removed = 0;
    for meta in markers {
        let parts: Vec<_> = meta.location.parts().collect();
        let [_, pipeline, file] = parts.as_slice() else { continue };
        let Some(seq) = file.as_ref().strip_suffix(".json").and_then(|s| s.parse::<i64>().ok()) else { continue };
        let pipeline = pipeline.as_ref();
        let last = match committed.get(pipeline) {
            Some(last) => *last,
            None => {
                let last = committed_load(table, pipeline).await?;
                committed.insert(pipeline.to_owned(), last);
                last
            }
        };
        if last.is_some_and(|c| seq < c) {
            store.delete(&meta.location).await.map_err(|e| store_error(e, "deleting an old commit marker"))?;
            removed += 1;
        }
    }
    Ok(removed)
}
