{#-
    Service levels per UTC day, tenant, agent and model: latency percentiles and error, fallback and
    guardrail rates over the attempts actually sent (skipped deployments excluded). A guardrail counts
    when it masked or blocked something.
    Incremental by day, like fct_cost_daily: the days that received a call loaded since the last build are
    recomputed from all their calls (percentiles need the whole day) and replace their rows.
-#}
{{
    config(
        materialized='incremental',
        unique_key='sla_date',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

with

calls as (

    select * from {{ ref('fct_llm_calls') }}
    where status <> 'skipped'
    {% if is_incremental() %}
        and call_date in (
            select call_date from {{ ref('fct_llm_calls') }}
            where {{ loaded_since_last_build() }}
        )
    {% endif %}

),

final as (

    select
        call_date as sla_date,
        tenant_id,
        agent_id,
        model_name,
        count(*) as calls,
        cast(round(cast({{ percentile_cont('latency_ms', 0.5) }} as numeric(18, 4)), 2) as numeric(18, 2))
            as latency_p50_ms,
        cast(round(cast({{ percentile_cont('latency_ms', 0.95) }} as numeric(18, 4)), 2) as numeric(18, 2))
            as latency_p95_ms,
        cast(round(cast({{ percentile_cont('latency_ms', 0.99) }} as numeric(18, 4)), 2) as numeric(18, 2))
            as latency_p99_ms,
        {{ safe_ratio("count(case when status = 'error' then 1 end)", 'count(*)') }} as error_rate,
        {{ safe_ratio('count(case when is_fallback then 1 end)', 'count(*)') }} as fallback_rate,
        {{ safe_ratio("count(case when guardrail_action in ('masked', 'blocked') then 1 end)", 'count(*)') }}
            as guardrail_rate,
        max(loaded_at) as loaded_at

    from calls
    group by call_date, tenant_id, agent_id, model_name

)

select * from final
