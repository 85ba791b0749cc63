{{ config(materialized='view') }}

select
    id::bigint             as user_id,
    username,
    trim(display_name)     as display_name,
    upper(country)         as country,
    created_at,
    updated_at
from {{ source('bronze_chat', 'users') }}
