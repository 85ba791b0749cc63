{{ config(materialized='incremental', unique_key='date_key', incremental_strategy='delete+insert') }}

-- One row per day: daily active users (users who sent a message), messages sent,
-- new users and new chats. Incremental: only the days that rows changed since the
-- last build belong to are computed again.
{% set since %}
    (select coalesce(max(source_updated_at), timestamp '1900-01-01') from {{ this }})
{% endset %}

with touched as (
    {% if is_incremental() %}
    select distinct date_key from {{ ref('fact_messages') }} where updated_at >= {{ since }}
    union
    select distinct signup_date_key from {{ ref('dim_user') }} where updated_at >= {{ since }}
    union
    select distinct to_char(created_at, 'YYYYMMDD')::integer from {{ ref('chat_chats') }} where updated_at >= {{ since }}
    {% else %}
    select date_key from {{ ref('dim_time') }}
    {% endif %}
),

messages as (
    select date_key, count(distinct user_key) as daily_active_users, count(*) as messages_sent,
           max(updated_at) as updated_at
    from {{ ref('fact_messages') }}
    where date_key in (select date_key from touched)
    group by date_key
),

users as (
    select signup_date_key as date_key, count(*) as new_users, max(updated_at) as updated_at
    from {{ ref('dim_user') }}
    where signup_date_key in (select date_key from touched)
    group by signup_date_key
),

chats as (
    select to_char(created_at, 'YYYYMMDD')::integer as date_key, count(*) as new_chats, max(updated_at) as updated_at
    from {{ ref('chat_chats') }}
    where to_char(created_at, 'YYYYMMDD')::integer in (select date_key from touched)
    group by 1
)

select
    t.date_key,
    coalesce(m.daily_active_users, 0)             as daily_active_users,
    coalesce(m.messages_sent, 0)                  as messages_sent,
    coalesce(u.new_users, 0)                      as new_users,
    coalesce(c.new_chats, 0)                      as new_chats,
    greatest(m.updated_at, u.updated_at, c.updated_at) as source_updated_at
from touched t
left join messages m using (date_key)
left join users u using (date_key)
left join chats c using (date_key)
where t.date_key is not null
