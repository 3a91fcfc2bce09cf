with

tenants as (

    select * from {{ ref('stg_ops__tenants') }}

),

departments as (

    select * from {{ ref('stg_ops__departments') }}

),

users as (

    select * from {{ ref('stg_ops__users') }}

),

agents as (

    select * from {{ ref('stg_ops__agents') }}

),

integrations as (

    select * from {{ ref('stg_ops__integrations') }}

),

department_counts as (

    select
        tenant_id,
        count(*) as department_count

    from departments
    where is_active
    group by tenant_id

),

user_counts as (

    select
        tenant_id,
        count(*) as user_count

    from users
    where is_active and tenant_id is not null
    group by tenant_id

),

agent_counts as (

    select
        tenant_id,
        count(*) as agent_count,
        sum(case when is_active then 1 else 0 end) as active_agent_count

    from agents
    where status <> 'retired'
    group by tenant_id

),

integration_counts as (

    select
        tenant_id,
        count(*) as integration_count

    from integrations
    where is_active
    group by tenant_id

),

final as (

    select
        tenants.tenant_id,
        tenants.display_name,
        tenants.region,
        tenants.plan,
        tenants.max_concurrent_runs,
        tenants.budget_hard_usd,
        tenants.budget_soft_usd,
        tenants.status,
        tenants.is_active,

        cast(coalesce(department_counts.department_count, 0) as integer) as department_count,
        cast(coalesce(user_counts.user_count, 0) as integer) as user_count,
        cast(coalesce(agent_counts.agent_count, 0) as integer) as agent_count,
        cast(coalesce(agent_counts.active_agent_count, 0) as integer) as active_agent_count,
        cast(coalesce(integration_counts.integration_count, 0) as integer) as integration_count,

        tenants.config_version,
        tenants.updated_at,
        tenants.removed_at

    from tenants
    left join department_counts on tenants.tenant_id = department_counts.tenant_id
    left join user_counts on tenants.tenant_id = user_counts.tenant_id
    left join agent_counts on tenants.tenant_id = agent_counts.tenant_id
    left join integration_counts on tenants.tenant_id = integration_counts.tenant_id

)

select * from final
