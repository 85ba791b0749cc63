-- One row per chat: its size and traffic to date.
with members as (
    select chat_id, count(*) as members from {{ ref('chat_members') }} group by chat_id
),

traffic as (
    select chat_id, count(*) as messages, count(distinct user_key) as senders,
           min(sent_at) as first_message_at, max(sent_at) as last_message_at
    from {{ ref('fact_messages') }}
    group by chat_id
)

select
    c.chat_id,
    c.title,
    c.is_group,
    c.created_by                                  as created_by_user_key,
    to_char(c.created_at, 'YYYYMMDD')::integer    as created_date_key,
    coalesce(m.members, 0)                        as members,
    coalesce(t.messages, 0)                       as messages,
    coalesce(t.senders, 0)                        as senders,
    t.first_message_at,
    t.last_message_at
from {{ ref('chat_chats') }} c
left join members m using (chat_id)
left join traffic t using (chat_id)
