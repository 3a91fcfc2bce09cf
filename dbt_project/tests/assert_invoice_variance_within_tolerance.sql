{#-
    Invoice reconciliation: fails when a provider's invoice differs from the gateway's records for a day,
    model (and tenant) by more than the `invoice_tolerance_pct` var (default 2%). Returns the lines out of tolerance.
-#}
select *
from {{ ref('fct_invoice_variance') }}
where not within_tolerance
