{#- One row per policy decision: routing, budget, rate-limit and guardrail decisions the gateway took. -#}
with

decisions as (

    select * from {{ ref('stg_ops__policy_decisions') }}

),

final as (

    select
        event_id,
        tenant_id,
        department_id,
        agent_id,
        run_id,
        call_id,
        occurred_at,
        {{ utc_date('occurred_at') }} as decision_date,
        decision,
        action,
        action in ('refused', 'blocked') as is_denial,
        reason,
        scanned_side,
        kinds

    from decisions

)

select * from final
