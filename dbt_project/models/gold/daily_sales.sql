-- Sales by order date and status.
select
    order_date,
    status,
    count(*)             as orders,
    sum(quantity)        as units,
    sum(total)           as revenue
from {{ ref('orders') }}
group by order_date, status
