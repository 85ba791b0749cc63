{{ config(materialized='view') }}

select
    chat_id::bigint        as chat_id,
    user_id::bigint        as user_id,
    role,
    joined_at,
    updated_at
from {{ source('bronze_chat', 'chat_members') }}
