#!/usr/bin/env bash
# Check docker-compose.yml without a Docker engine: validate it against the Compose
# specification's JSON schema (check-jsonschema, from PyPI, with its vendored copy of the
# schema), then check that it is wired to .env.example and in step with
# scripts/services.sh: every service that script provides has its Compose counterpart,
# every ${VAR} Compose reads is in .env.example, and every host .env.example names is a
# Compose service.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${WEIR_SERVICES_DIR:-$HOME/.cache/weir/services}/lint-venv
if ! "$venv/bin/check-jsonschema" --version >/dev/null 2>&1; then
  echo "check-compose: installing check-jsonschema with pip into $venv" >&2
  python3 -m venv "$venv" >&2 || { rm -rf "$venv"; apt-get install -y -qq python3-venv >&2; python3 -m venv "$venv" >&2; }
  "$venv/bin/pip" install -q "check-jsonschema>=0.29" >&2
fi
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

"$venv/bin/python" - <<'PY'
import re, sys
from urllib.parse import urlparse
from ruamel.yaml import YAML  # check-jsonschema's own YAML reader

compose = YAML(typ="safe").load(open("docker-compose.yml"))
services = set(compose["services"])
env = {}
for line in open(".env.example"):
    line = line.strip()
    if line and not line.startswith("#") and "=" in line:
        key, value = line.split("=", 1)
        env[key] = value.strip('"')
problems = []

# scripts/services.sh's services and what plays their part in Compose.
counterpart = {"postgres": "postgres", "mariadb": "mariadb", "s3": "minio", "smtp": "mailpit", "dbt": "weir",
               "deltalake": None, "clickhouse": "clickhouse",
               "kafka": "redpanda", "redis": "redis", "browser": None}
script = open("scripts/services.sh").read()
known = re.search(r"\|\| services=\(([^)]*)\)", script).group(1).split()
for s in known:
    if s not in counterpart:
        problems.append(f"scripts/services.sh provides `{s}`: give it a Compose counterpart in check-compose.sh")
    elif counterpart[s] and counterpart[s] not in services:
        problems.append(f"scripts/services.sh provides `{s}`, but docker-compose.yml has no `{counterpart[s]}`")

# Every variable Compose interpolates is set in .env.example.
for var in sorted(set(re.findall(r"\$\{(\w+)", open("docker-compose.yml").read()))):
    if var not in env:
        problems.append(f"docker-compose.yml reads ${{{var}}}, which .env.example does not set")

# Every URL in .env.example points at a Compose service, with the password Compose gives it.
secrets = {"postgres": env.get("WEIR_PG_PASSWORD"), "mariadb": env.get("WEIR_MARIADB_PASSWORD"),
           "clickhouse": env.get("WEIR_CLICKHOUSE_PASSWORD")}
for key, value in env.items():
    if "://" not in value or value.startswith("file:"):
        continue
    url = urlparse(value)
    hosts = [url.hostname] + [urlparse(v).hostname for v in re.findall(r"endpoint=([^&]+)", value)]
    for host in filter(None, hosts):
        if host not in services and url.scheme not in ("s3",):
            problems.append(f".env.example {key} names host `{host}`, which is no Compose service")
    if url.hostname in secrets and url.password != secrets[url.hostname]:
        problems.append(f".env.example {key}: the password is not the one Compose gives `{url.hostname}`")
    if "secret_access_key=" in value and f"secret_access_key={env.get('WEIR_S3_SECRET_KEY')}" not in value:
        problems.append(f".env.example {key}: the S3 secret is not WEIR_S3_SECRET_KEY")
    for endpoint in re.findall(r"endpoint=([^&]+)", value):
        if urlparse(endpoint).hostname not in services:
            problems.append(f".env.example {key}: endpoint {endpoint} is no Compose service")

if compose["services"]["weir"].get("env_file") != [".env"]:
    problems.append("the weir service must read .env")
for p in problems:
    print(f"check-compose: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"check-compose: {len(services)} services, in step with scripts/services.sh and .env.example")
PY
