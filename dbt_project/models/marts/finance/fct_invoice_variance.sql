{#-
    Provider invoices against the gateway's own records, per usage day, provider and model (and tenant
    where the provider bills per tenant). Invoice lines without a tenant are compared with the gateway's
    platform-wide total. Sandbox calls are excluded: no provider bills for them. Gateway days with no
    invoice line show up only within the date range a provider's invoices cover.
-#}
with

invoice_lines as (

    select * from {{ ref('stg_invoices__provider_invoice_lines') }}

),

calls as (

    select * from {{ ref('fct_llm_calls') }}
    where not is_sandbox

),

invoiced as (

    select
        usage_date,
        provider,
        model_name,
        tenant_id,
        sum(cost_usd) as invoice_cost_usd

    from invoice_lines
    group by usage_date, provider, model_name, tenant_id

),

coverage as (

    -- Which days each provider's invoices cover, and whether they bill per tenant.
    select
        provider,
        min(usage_date) as first_date,
        max(usage_date) as last_date,
        max(case when tenant_id is not null then 1 else 0 end) = 1 as bills_per_tenant

    from invoice_lines
    group by provider

),

gateway_by_tenant as (

    select call_date as usage_date, provider, model_name, tenant_id, sum(cost_usd) as gateway_cost_usd
    from calls
    group by call_date, provider, model_name, tenant_id

),

gateway_platform as (

    select
        call_date as usage_date,
        provider,
        model_name,
        cast(null as {{ dbt.type_string() }}) as tenant_id,
        sum(cost_usd) as gateway_cost_usd
    from calls
    group by call_date, provider, model_name

),

gateway as (

    -- The gateway side at the grain each provider bills at, within the days its invoices cover.
    select gateway_by_tenant.*
    from gateway_by_tenant
    inner join coverage
        on gateway_by_tenant.provider = coverage.provider
        and coverage.bills_per_tenant
        and gateway_by_tenant.usage_date between coverage.first_date and coverage.last_date
    union all
    select gateway_platform.*
    from gateway_platform
    inner join coverage
        on gateway_platform.provider = coverage.provider
        and not coverage.bills_per_tenant
        and gateway_platform.usage_date between coverage.first_date and coverage.last_date

),

compared as (

    select
        coalesce(invoiced.usage_date, gateway.usage_date) as usage_date,
        coalesce(invoiced.tenant_id, gateway.tenant_id) as tenant_id,
        coalesce(invoiced.provider, gateway.provider) as provider,
        coalesce(invoiced.model_name, gateway.model_name) as model_name,
        cast(coalesce(invoiced.invoice_cost_usd, 0) as numeric(18, 8)) as invoice_cost_usd,
        cast(coalesce(gateway.gateway_cost_usd, 0) as numeric(18, 8)) as gateway_cost_usd

    from invoiced
    full outer join gateway
        on invoiced.usage_date = gateway.usage_date
        and invoiced.provider = gateway.provider
        and invoiced.model_name = gateway.model_name
        and (invoiced.tenant_id = gateway.tenant_id or (invoiced.tenant_id is null and gateway.tenant_id is null))

),

final as (

    select
        usage_date,
        tenant_id,
        provider,
        model_name,
        invoice_cost_usd,
        gateway_cost_usd,
        cast(invoice_cost_usd - gateway_cost_usd as numeric(18, 8)) as variance_usd,
        -- Percent of the gateway's figure; NULL when the gateway recorded nothing to compare with.
        {{ safe_ratio('(invoice_cost_usd - gateway_cost_usd) * 100', 'gateway_cost_usd', 4) }} as variance_pct,
        case
            when gateway_cost_usd = 0 then invoice_cost_usd = 0
            else abs(invoice_cost_usd - gateway_cost_usd) * 100 <= {{ var('invoice_tolerance_pct') }} * gateway_cost_usd
        end as within_tolerance

    from compared

)

select * from final
