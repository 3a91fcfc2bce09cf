with

source as (

    select * from {{ source('ops', 'agents') }}

),

renamed as (

    select
        -- ids
        agent_id,
        tenant_id,
        department_id,
        owner as owner_user_id,

        -- attributes
        name as agent_name,
        agent_type,
        version as agent_version,
        schedule,
        status,

        -- the whole validated config entry
        spec as spec_json,

        -- lineage
        cast(config_version as integer) as config_version,
        updated_at,
        _loaded_at as loaded_at

    from source

),

final as (

    select
        agent_id,
        tenant_id,
        department_id,
        {{ tenant_scoped_key('tenant_id', 'department_id') }} as department_key,
        owner_user_id,
        agent_name,
        agent_type,
        agent_version,
        schedule,
        status,
        status = 'active' as is_active,

        -- model requirements
        {{ json_extract_text('spec_json', 'requirements.tier') }} as required_tier,
        cast({{ json_extract_text('spec_json', 'requirements.min_context_window') }} as integer)
            as min_context_window,
        cast({{ json_extract_text('spec_json', 'requirements.max_input_per_mtok_usd') }} as numeric(18, 8))
            as max_input_per_mtok_usd,

        -- run limits
        cast({{ json_extract_text('spec_json', 'limits.max_steps') }} as integer) as max_steps,
        cast({{ json_extract_text('spec_json', 'limits.max_tokens') }} as integer) as max_tokens,
        cast({{ json_extract_text('spec_json', 'limits.max_wall_seconds') }} as integer) as max_wall_seconds,
        cast({{ json_extract_text('spec_json', 'limits.max_concurrent_tasks') }} as integer)
            as max_concurrent_tasks,

        -- the agent's own monthly budget; NULL when it has none
        cast({{ json_extract_text('spec_json', 'budget.monthly_hard_usd') }} as numeric(18, 8)) as budget_hard_usd,
        cast({{ json_extract_text('spec_json', 'budget.monthly_soft_usd') }} as numeric(18, 8)) as budget_soft_usd,

        -- how work reaches it
        {{ json_array_length('spec_json', 'tools') }} as tool_count,
        {{ json_array_length('spec_json', 'triggers') }} as trigger_count,

        spec_json,
        config_version,
        updated_at,
        loaded_at

    from renamed

)

select * from final
