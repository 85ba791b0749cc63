"""The peer for bench/parquet_to_delta.sh: the Python `deltalake` package.

    deltalake_peer.py write PARQUET_DIR TABLE   # write_deltalake of every file, streamed, overwrite
    deltalake_peer.py merge PARQUET_DIR TABLE   # MERGE the files' rows into TABLE by order_id
"""
import sys

import pyarrow.dataset as ds
from deltalake import DeltaTable, write_deltalake

command, source, table = sys.argv[1:4]
data = ds.dataset(source, format="parquet")
if command == "write":
    # A RecordBatchReader: the files stream through, as they do through Weir.
    reader = data.scanner().to_reader()
    write_deltalake(table, reader, mode="overwrite")
elif command == "merge":
    changes = data.to_table()
    (
        DeltaTable(table)
        .merge(changes, predicate="t.order_id = s.order_id", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )
else:
    sys.exit(f"unknown command {command}")
