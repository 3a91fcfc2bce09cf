{#- One row per policy decision (kind `policy`): routing, budget, rate-limit and guardrail decisions. -#}
with

source as (

    select * from {{ source('ops', 'events') }}
    where kind = 'policy'

),

renamed as (

    select
        -- ids
        event_id,
        cast(seq as bigint) as seq,
        tenant_id,
        agent_id,
        run_id,
        {{ json_extract_text('payload', 'call_id') }} as call_id,
        {{ json_extract_text('payload', 'department_id') }} as department_id,

        -- the decision: guardrail events say `action`, the others `decision`
        name as decision,
        coalesce(
            {{ json_extract_text('payload', 'action') }}, {{ json_extract_text('payload', 'decision') }}
        ) as action,
        {{ json_extract_text('payload', 'reason') }} as reason,
        {{ json_extract_text('payload', 'where') }} as scanned_side,
        {{ json_object_keys_csv('payload', 'found') }} as kinds,

        -- when
        occurred_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
