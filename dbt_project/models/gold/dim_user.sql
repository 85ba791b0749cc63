{{ config(materialized='incremental', unique_key='user_key', incremental_strategy='delete+insert') }}

-- The chat product's users, current version (type 1). Incremental: users changed since
-- the last build (>= so that rows sharing the last timestamp are never missed).
select
    user_id                                       as user_key,
    username,
    display_name,
    country,
    created_at,
    to_char(created_at, 'YYYYMMDD')::integer      as signup_date_key,
    updated_at
from {{ ref('chat_users') }}
{% if is_incremental() %}
where updated_at >= (select coalesce(max(updated_at), timestamp '1900-01-01') from {{ this }})
{% endif %}
