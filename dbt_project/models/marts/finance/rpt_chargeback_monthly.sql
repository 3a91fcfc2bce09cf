{#-
    Monthly chargeback in the FinOps FOCUS 1.x column layout, so the export loads into FinOps tools.
    Grain: billing month x tenant x department x agent x model x provider x sandbox flag.

    Mapping: the tenant is the billing account, its department the sub-account, the agent the resource,
    the model provider the publisher; AgentProvision is the provider and invoice issuer. The gateway's
    charged cost is the billed and effective cost; no separate list or contracted price is tracked per call,
    so ListCost and ContractedCost equal it. Pricing is per million tokens.
-#}
with

cost_daily as (

    select * from {{ ref('fct_cost_daily') }}

),

tenants as (

    select * from {{ ref('stg_ops__tenants') }}

),

departments as (

    select * from {{ ref('stg_ops__departments') }}

),

agents as (

    select * from {{ ref('stg_ops__agents') }}

),

monthly as (

    select
        {{ month_start('cost_date') }} as billing_month,
        tenant_id,
        department_id,
        agent_id,
        model_name,
        provider,
        is_sandbox,
        sum(calls) as calls,
        sum(prompt_tokens + completion_tokens) as total_tokens,
        sum(cost_usd) as cost_usd

    from cost_daily
    group by {{ month_start('cost_date') }}, tenant_id, department_id, agent_id, model_name, provider, is_sandbox

),

final as (

    select
        -- FOCUS: billing account and period
        monthly.tenant_id as "BillingAccountId",
        tenants.display_name as "BillingAccountName",
        {{ utc_midnight('monthly.billing_month') }} as "BillingPeriodStart",
        {{ utc_midnight(add_days('monthly.billing_month', days_in_month('monthly.billing_month'))) }}
            as "BillingPeriodEnd",
        {{ utc_midnight('monthly.billing_month') }} as "ChargePeriodStart",
        {{ utc_midnight(add_days('monthly.billing_month', days_in_month('monthly.billing_month'))) }}
            as "ChargePeriodEnd",

        -- FOCUS: the charge
        'Usage' as "ChargeCategory",
        'LLM usage of ' || coalesce(monthly.model_name, 'unknown model')
            || ' (' || coalesce(monthly.provider, 'unknown provider') || ')'
            || case when monthly.is_sandbox then ' [sandbox]' else '' end as "ChargeDescription",
        cast(monthly.cost_usd as numeric(18, 8)) as "BilledCost",
        cast(monthly.cost_usd as numeric(18, 8)) as "EffectiveCost",
        cast(monthly.cost_usd as numeric(18, 8)) as "ListCost",
        cast(monthly.cost_usd as numeric(18, 8)) as "ContractedCost",
        'USD' as "BillingCurrency",
        cast(monthly.total_tokens / 1000000.0 as numeric(18, 6)) as "PricingQuantity",
        '1M Tokens' as "PricingUnit",
        cast(monthly.total_tokens as numeric(18, 0)) as "ConsumedQuantity",
        'Tokens' as "ConsumedUnit",

        -- FOCUS: who provides what
        'AgentProvision' as "ProviderName",
        coalesce(monthly.provider, 'unknown') as "PublisherName",
        'AgentProvision' as "InvoiceIssuerName",
        'AgentProvision LLM Gateway' as "ServiceName",
        'AI and Machine Learning' as "ServiceCategory",

        -- FOCUS: the resource (the agent that spent) and where
        monthly.agent_id as "ResourceId",
        agents.agent_name as "ResourceName",
        case when monthly.agent_id is null then null else 'AI Agent' end as "ResourceType",
        tenants.region as "RegionId",
        {{ tenant_scoped_key('monthly.tenant_id', 'monthly.department_id') }} as "SubAccountId",
        departments.department_name as "SubAccountName",
        '{"cost_centre":' || coalesce('"' || departments.cost_centre || '"', 'null')
            || ',"model":' || coalesce('"' || monthly.model_name || '"', 'null')
            || ',"sandbox":' || case when monthly.is_sandbox then 'true' else 'false' end
            || '}' as "Tags",

        -- platform columns for filtering and joins
        monthly.tenant_id,
        monthly.department_id,
        monthly.agent_id,
        monthly.model_name,
        monthly.provider,
        monthly.is_sandbox,
        monthly.billing_month,
        cast(monthly.calls as bigint) as calls

    from monthly
    left join tenants on monthly.tenant_id = tenants.tenant_id
    left join departments
        on monthly.tenant_id = departments.tenant_id and monthly.department_id = departments.department_id
    left join agents on monthly.agent_id = agents.agent_id

)

select * from final
