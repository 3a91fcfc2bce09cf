with

agents as (

    select * from {{ ref('stg_ops__agents') }}

),

tenants as (

    select * from {{ ref('stg_ops__tenants') }}

),

departments as (

    select * from {{ ref('stg_ops__departments') }}

),

users as (

    select * from {{ ref('stg_ops__users') }}

),

final as (

    select
        agents.agent_id,
        agents.agent_name,
        agents.agent_type,
        agents.agent_version,

        -- who it belongs to, and who pays
        agents.tenant_id,
        tenants.display_name as tenant_display_name,
        tenants.region as tenant_region,
        agents.department_key,
        agents.department_id,
        departments.department_name,
        departments.cost_centre,
        agents.owner_user_id,
        owners.user_name as owner_name,

        -- how it runs
        agents.status,
        agents.is_active,
        agents.schedule,
        agents.schedule is not null as is_scheduled,
        agents.trigger_count,
        agents.tool_count,

        -- what it may use
        agents.required_tier,
        agents.min_context_window,
        agents.max_input_per_mtok_usd,
        agents.max_steps,
        agents.max_tokens,
        agents.max_wall_seconds,
        agents.max_concurrent_tasks,
        agents.budget_hard_usd,
        agents.budget_soft_usd,

        agents.config_version,
        agents.updated_at

    from agents
    left join tenants on agents.tenant_id = tenants.tenant_id
    left join departments on agents.department_key = departments.department_key
    left join users as owners on agents.owner_user_id = owners.user_id

)

select * from final
