-- One row per day the chat product has data for, keyed yyyymmdd.
with bounds as (
    select least(min(u.first_day), min(m.first_day)) as first_day,
           greatest(max(u.last_day), max(m.last_day)) as last_day
    from (select min(created_at)::date as first_day, max(created_at)::date as last_day
          from {{ ref('chat_users') }}) u,
         (select min(sent_at)::date as first_day, max(sent_at)::date as last_day
          from {{ ref('chat_messages') }}) m
),

days as (
    select generate_series(first_day, last_day, interval '1 day')::date as day
    from bounds
    where first_day is not null
)

select
    to_char(day, 'YYYYMMDD')::integer            as date_key,
    day                                          as date,
    extract(year from day)::integer              as year,
    extract(quarter from day)::integer           as quarter,
    extract(month from day)::integer             as month,
    trim(to_char(day, 'Month'))                  as month_name,
    extract(day from day)::integer               as day_of_month,
    extract(week from day)::integer              as iso_week,
    extract(isodow from day)::integer            as day_of_week,
    trim(to_char(day, 'Day'))                    as day_name,
    extract(isodow from day) in (6, 7)           as is_weekend
from days
