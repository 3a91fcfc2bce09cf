{#-
    Every cost mart carries exactly the spend the gateway recorded: per tenant, the total cost in
    fct_llm_calls, fct_cost_daily, rpt_chargeback_monthly and the tenant rows of fct_budget_status (months up to
    as_of_date) equals the sum of cost_usd over the raw usage events, to the cent. Returns the mismatches.
-#}
with

raw_usage as (

    select
        tenant_id,
        sum(cast({{ json_extract_text('payload', 'cost_usd') }} as numeric(18, 8))) as cost_usd
    from {{ source('ops', 'events') }}
    where kind = 'usage' and name = 'model_call'
    group by tenant_id

),

raw_usage_to_date as (

    select
        tenant_id,
        sum(cast({{ json_extract_text('payload', 'cost_usd') }} as numeric(18, 8))) as cost_usd
    from {{ source('ops', 'events') }}
    where kind = 'usage' and name = 'model_call' and {{ utc_date('occurred_at') }} <= {{ as_of_date() }}
    group by tenant_id

),

marts as (

    select 'fct_llm_calls' as mart, tenant_id, sum(cost_usd) as cost_usd
    from {{ ref('fct_llm_calls') }} group by tenant_id
    union all
    select 'fct_cost_daily', tenant_id, sum(cost_usd)
    from {{ ref('fct_cost_daily') }} group by tenant_id
    union all
    select 'rpt_chargeback_monthly', tenant_id, sum("BilledCost")
    from {{ ref('rpt_chargeback_monthly') }} group by tenant_id

),

budget as (

    select tenant_id, sum(spend_mtd_usd) as cost_usd
    from {{ ref('fct_budget_status') }}
    where budget_level = 'tenant'
    group by tenant_id

),

mismatches as (

    select mart_names.mart, raw_usage.tenant_id, raw_usage.cost_usd as raw_cost_usd, marts.cost_usd as mart_cost_usd
    from raw_usage
    cross join (
        select 'fct_llm_calls' as mart
        union all select 'fct_cost_daily'
        union all select 'rpt_chargeback_monthly'
    ) as mart_names
    left join marts on raw_usage.tenant_id = marts.tenant_id and mart_names.mart = marts.mart
    where marts.cost_usd is null or round(marts.cost_usd, 2) <> round(raw_usage.cost_usd, 2)

    union all

    -- A mart holding spend for a tenant the raw events never charged.
    select marts.mart, marts.tenant_id, null, marts.cost_usd
    from marts
    left join raw_usage on marts.tenant_id = raw_usage.tenant_id
    where raw_usage.tenant_id is null and marts.cost_usd <> 0

    union all

    -- Budget status only counts tenants still configured, up to as_of_date.
    select 'fct_budget_status', raw_usage_to_date.tenant_id, raw_usage_to_date.cost_usd, budget.cost_usd
    from raw_usage_to_date
    inner join budget on raw_usage_to_date.tenant_id = budget.tenant_id
    where round(budget.cost_usd, 2) <> round(raw_usage_to_date.cost_usd, 2)

)

select * from mismatches
