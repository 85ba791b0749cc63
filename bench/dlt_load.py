"""Load the bench Parquet files into PostgreSQL with dlt (the peer in bench/parquet_to_postgres.sh).

dlt reads the files as Arrow record batches (pyarrow) and loads them with its Postgres
destination using its fastest documented path for Arrow data (`loader_file_format="csv"`,
i.e. COPY), replacing the table.
"""

import glob
import sys

import dlt
import pyarrow.parquet as pq


def main(folder: str, dsn: str, table: str) -> None:
    @dlt.resource(name=table, write_disposition="replace")
    def orders():
        for path in sorted(glob.glob(f"{folder}/*.parquet")):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=65536):
                yield batch

    pipeline = dlt.pipeline(
        pipeline_name=f"weir_bench_{table}",
        destination=dlt.destinations.postgres(credentials=dsn),
        dataset_name="bench_dlt",
        pipelines_dir="bench/data/dlt-pipelines",
    )
    info = pipeline.run(orders(), loader_file_format="csv")
    print(info, file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
