{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

{#-
    One row per model-call attempt. Incremental on load time: each row is one event that never changes once
    loaded, so a run takes the events loaded since the last build, late ones included (see
    loaded_since_last_build); unique_key event_id keeps an event selected again from being duplicated.
-#}
with

calls as (

    select * from {{ ref('stg_ops__llm_calls') }}
    {% if is_incremental() %}
    where {{ loaded_since_last_build() }}
    {% endif %}

),

final as (

    select
        -- ids
        event_id,
        call_id,
        trace_id,
        tenant_id,
        department_id,
        agent_id,
        run_id,

        -- when
        occurred_at,
        {{ utc_date('occurred_at') }} as call_date,

        -- routing
        model_requested,
        deployment_id,
        model_name,
        provider,
        region,
        is_sandbox,
        attempt,

        -- tokens and money
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        reasoning_tokens,
        prompt_tokens + completion_tokens as total_tokens,
        cost_usd,

        -- outcome
        latency_ms,
        status,
        error_class,
        fallback_depth,
        fallback_depth > 0 as is_fallback,
        guardrail_action,

        loaded_at

    from calls

)

select * from final
