{{
    config(
        materialized='incremental',
        unique_key='cost_date',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

{#-
    Spend per UTC day, tenant, department, agent, model and provider; sandbox spend kept apart by is_sandbox.
    Incremental by day: a run recomputes, from all their calls, the days that received a call loaded since
    the last build, and replaces those days' rows (unique_key cost_date); other days are left as they are.
-#}
with

calls as (

    select * from {{ ref('fct_llm_calls') }}
    {% if is_incremental() %}
    where call_date in (
        select call_date from {{ ref('fct_llm_calls') }}
        where {{ loaded_since_last_build() }}
    )
    {% endif %}

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
        cast(sum(cost_usd) as numeric(18, 8)) as cost_usd,
        max(loaded_at) as loaded_at

    from calls
    group by call_date, tenant_id, department_id, agent_id, model_name, provider, is_sandbox

)

select * from final
