{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

{#- One row per tool call, incremental on event time; see late_event_filter for late events. -#}
with

tool_calls as (

    select * from {{ ref('stg_ops__tool_calls') }}
    {% if is_incremental() %}
    where {{ late_event_filter() }}
    {% endif %}

),

final as (

    select
        event_id,
        tenant_id,
        department_id,
        agent_id,
        run_id,
        task_id,
        step,
        occurred_at,
        {{ utc_date('occurred_at') }} as call_date,
        tool_name,
        status,
        error_class,
        latency_ms,
        outcome,
        loaded_at

    from tool_calls

)

select * from final
