{#- Spend per UTC day, tenant, department, agent, model and provider; sandbox spend kept apart by is_sandbox. -#}
with

calls as (

    select * from {{ ref('fct_llm_calls') }}

),

final as (

    select
        call_date as cost_date,
        tenant_id,
        department_id,
        agent_id,
        model_name,
        provider,
        is_sandbox,
        -- A call is counted once, on the attempt that answered or on its last failed attempt.
        count(distinct case when status <> 'skipped' then call_id end) as calls,
        count(case when status <> 'skipped' then 1 end) as attempts,
        cast(sum(prompt_tokens) as bigint) as prompt_tokens,
        cast(sum(completion_tokens) as bigint) as completion_tokens,
        cast(sum(cost_usd) as numeric(18, 8)) as cost_usd

    from calls
    group by call_date, tenant_id, department_id, agent_id, model_name, provider, is_sandbox

)

select * from final
