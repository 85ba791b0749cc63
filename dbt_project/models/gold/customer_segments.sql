-- Sales by the customer's current segment and country.
select
    c.segment,
    c.country,
    count(distinct o.customer_id)   as customers,
    count(*)                        as orders,
    sum(o.total)                    as revenue
from {{ ref('orders') }} o
join {{ ref('customers') }} c using (customer_id)
group by c.segment, c.country
