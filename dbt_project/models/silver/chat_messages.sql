{{ config(materialized='view') }}

select
    id::bigint                    as message_id,
    chat_id::bigint               as chat_id,
    user_id::bigint               as user_id,
    body,
    sent_at,
    edited_at,
    edit_count::integer           as edit_count,
    updated_at
from {{ source('bronze_chat', 'messages') }}
