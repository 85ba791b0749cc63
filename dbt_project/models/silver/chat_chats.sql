{{ config(materialized='view') }}

select
    id::bigint             as chat_id,
    title,
    is_group::boolean      as is_group,
    created_by::bigint     as created_by,
    created_at,
    updated_at
from {{ source('bronze_chat', 'chats') }}
