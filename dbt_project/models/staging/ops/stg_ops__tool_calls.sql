{#- One row per tool call the agent runtime recorded (tool/tool_call events), payload unpacked. -#}
with

source as (

    select * from {{ source('ops', 'events') }}
    where kind = 'tool' and name = 'tool_call'

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
        cast({{ json_extract_text('payload', 'step') }} as integer) as step,

        -- the call
        {{ json_extract_text('payload', 'tool') }} as tool_name,
        {{ json_extract_text('payload', 'status') }} as status,
        {{ json_extract_text('payload', 'error_class') }} as error_class,
        cast({{ json_extract_text('payload', 'latency_ms') }} as double precision) as latency_ms,
        {{ json_extract_text('payload', 'outcome') }} as outcome,

        -- when
        occurred_at,
        _loaded_at as loaded_at

    from source

)

select * from renamed
