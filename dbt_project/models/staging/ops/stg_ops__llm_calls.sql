{#- One row per model-call attempt the gateway recorded (usage/model_call events), payload unpacked. -#}
with

source as (

    select * from {{ source('ops', 'events') }}
    where kind = 'usage' and name = 'model_call'

),

renamed as (

    select
        -- ids
        event_id,
        cast(seq as bigint) as seq,
        {{ json_extract_text('payload', 'call_id') }} as call_id,
        {{ json_extract_text('payload', 'trace_id') }} as trace_id,
        tenant_id,
        {{ json_extract_text('payload', 'department_id') }} as department_id,
        agent_id,
        run_id,

        -- what was asked and what answered
        {{ json_extract_text('payload', 'model_requested') }} as model_requested,
        {{ json_extract_text('payload', 'deployment_id') }} as deployment_id,
        {{ json_extract_text('payload', 'model_name') }} as model_name,
        {{ json_extract_text('payload', 'provider') }} as provider,
        {{ json_extract_text('payload', 'region') }} as region,
        coalesce(cast({{ json_extract_text('payload', 'sandbox') }} as boolean), false) as is_sandbox,
        cast({{ json_extract_text('payload', 'attempt') }} as integer) as attempt,

        -- tokens and money
        coalesce(cast({{ json_extract_text('payload', 'prompt_tokens') }} as bigint), 0) as prompt_tokens,
        coalesce(cast({{ json_extract_text('payload', 'completion_tokens') }} as bigint), 0) as completion_tokens,
        coalesce(cast({{ json_extract_text('payload', 'cached_tokens') }} as bigint), 0) as cached_tokens,
        coalesce(cast({{ json_extract_text('payload', 'reasoning_tokens') }} as bigint), 0) as reasoning_tokens,
        coalesce(cast({{ json_extract_text('payload', 'cost_usd') }} as numeric(18, 8)), 0) as cost_usd,

        -- outcome
        cast({{ json_extract_text('payload', 'latency_ms') }} as double precision) as latency_ms,
        {{ json_extract_text('payload', 'status') }} as status,
        {{ json_extract_text('payload', 'error_class') }} as error_class,
        coalesce(cast({{ json_extract_text('payload', 'fallback_depth') }} as integer), 0) as fallback_depth,
        {{ json_extract_text('payload', 'guardrails.prompt.action') }} as prompt_guardrail_action,
        {{ json_extract_text('payload', 'guardrails.output.action') }} as output_guardrail_action,

        -- when
        occurred_at,
        _loaded_at as loaded_at

    from source

),

final as (

    select
        *,
        -- The strongest thing a guardrail did to the call, prompt or output side.
        case
            when 'blocked' in (prompt_guardrail_action, output_guardrail_action) then 'blocked'
            when 'masked' in (prompt_guardrail_action, output_guardrail_action) then 'masked'
            when 'allowed' in (prompt_guardrail_action, output_guardrail_action) then 'allowed'
            else 'clean'
        end as guardrail_action

    from renamed

)

select * from final
