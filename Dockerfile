# Weir's runner, with dbt for `source_type = 'dbt'` pipelines and the demo dbt project.
#   docker build -t weir/runner .
#   docker run --rm --env-file .env weir/runner --date 20250323

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p weir-runner && cp target/release/runner /usr/local/bin/runner

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv tini \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/dbt \
 && /opt/dbt/bin/pip install --no-cache-dir "dbt-core>=1.11,<1.12" "dbt-postgres>=1.9,<1.11" \
 && useradd --system --home /opt/weir weir
COPY --from=build /usr/local/bin/runner /usr/local/bin/runner
COPY dbt_project /opt/weir/dbt_project
ENV WEIR_DBT=/opt/dbt/bin/dbt \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false
WORKDIR /opt/weir
USER weir
ENTRYPOINT ["tini", "--", "runner"]
CMD ["--help"]
