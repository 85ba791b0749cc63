{{ config(materialized='incremental', unique_key='order_id', incremental_strategy='delete+insert') }}

-- One row per order: the latest version delivered (files can deliver an order again),
-- typed and cleaned. Incremental: each run reads the date slices from the newest one it
-- has seen, so a re-run of the last date is picked up too.
with delivered as (
    select *
    from {{ source('bronze', 'orders_daily') }}
    {% if is_incremental() %}
    where _weir_run_date >= (select coalesce(max(source_run_date), date '1900-01-01') from {{ this }})
    {% endif %}
),

latest as (
    select distinct on (order_id) *
    from delivered
    order by order_id, updated_at desc, _weir_run_date desc
)

select
    order_id::bigint                                  as order_id,
    customer_id::integer                              as customer_id,
    lower(trim(status))                               as status,
    quantity::integer                                 as quantity,
    unit_price::numeric(10, 2)                        as unit_price,
    discount::numeric(4, 2)                           as discount,
    total::numeric(12, 2)                             as total,
    created_at                                        as created_at,
    created_at::date                                  as order_date,
    updated_at                                        as updated_at,
    nullif(trim(note), '')                            as note,
    _weir_run_date                                    as source_run_date
from latest
