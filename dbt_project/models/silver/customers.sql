-- One row per customer: the latest extract's version, cleaned (emails trimmed and
-- lower-cased, country codes upper-cased, segments lower-cased).
with latest as (
    select distinct on (customer_id) *
    from {{ source('bronze', 'customers') }}
    order by customer_id, updated_at desc, _weir_run_date desc
)

select
    customer_id::integer                  as customer_id,
    trim(name)                            as name,
    lower(trim(email))                    as email,
    upper(trim(country))                  as country,
    lower(trim(segment))                  as segment,
    signup_date::date                     as signup_date,
    updated_at                            as updated_at
from latest
