{#-
    Agent run lifecycle events (kind `run`): run_started, run_finished and the approval steps, with the
    payload fields each carries unpacked (NULL where an event does not carry them). `outcomes_json` stays
    JSON because its keys are open-ended; int_run_outcomes_unpacked turns it into rows.
-#}
with

source as (

    select * from {{ source('ops', 'events') }}
    where kind = 'run'

),

renamed as (

    select
        -- ids
        event_id,
        cast(seq as bigint) as seq,
        tenant_id,
        agent_id,
        run_id,
        {{ json_extract_text('payload', 'task_id') }} as task_id,
        {{ json_extract_text('payload', 'department_id') }} as department_id,

        -- what happened
        name as event_name,
        {{ json_extract_text('payload', 'agent_type') }} as agent_type,
        {{ json_extract_text('payload', 'agent_version') }} as agent_version,
        {{ json_extract_text('payload', 'config_hash') }} as config_hash,
        {{ json_extract_text('payload', 'source') }} as run_source,
        {{ json_extract_text('payload', 'status') }} as status,
        {{ json_extract_text('payload', 'error_class') }} as error_class,

        -- run_finished totals
        cast({{ json_extract_text('payload', 'steps') }} as integer) as steps,
        cast({{ json_extract_text('payload', 'llm_calls') }} as integer) as llm_calls,
        cast({{ json_extract_text('payload', 'tool_calls') }} as integer) as tool_calls,
        cast({{ json_extract_text('payload', 'prompt_tokens') }} as bigint) as prompt_tokens,
        cast({{ json_extract_text('payload', 'completion_tokens') }} as bigint) as completion_tokens,
        cast({{ json_extract_text('payload', 'cost_usd') }} as numeric(18, 8)) as cost_usd,
        cast({{ json_extract_text('payload', 'duration_ms') }} as double precision) as duration_ms,
        cast({{ json_extract_text('payload', 'started_at') }} as timestamp with time zone) as reported_started_at,
        {{ json_extract_text('payload', 'outcomes') }} as outcomes_json,

        -- approvals
        {{ json_extract_text('payload', 'tool') }} as approval_tool,
        {{ json_extract_text('payload', 'approval_id') }} as approval_id,
        {{ json_extract_text('payload', 'actor') }} as approval_actor,

        -- when
        occurred_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
