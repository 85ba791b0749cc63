{{ config(materialized='incremental', unique_key='message_id', incremental_strategy='delete+insert') }}

-- One row per message. Incremental: messages sent or edited since the last build.
select
    message_id,
    chat_id,
    user_id                                       as user_key,
    to_char(sent_at, 'YYYYMMDD')::integer         as date_key,
    sent_at,
    edit_count > 0                                as is_edited,
    edit_count,
    char_length(body)                             as body_chars,
    updated_at
from {{ ref('chat_messages') }}
{% if is_incremental() %}
where updated_at >= (select coalesce(max(updated_at), timestamp '1900-01-01') from {{ this }})
{% endif %}
