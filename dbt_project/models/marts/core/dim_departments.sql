with

departments as (

    select * from {{ ref('stg_ops__departments') }}

),

tenants as (

    select * from {{ ref('stg_ops__tenants') }}

),

users as (

    select * from {{ ref('stg_ops__users') }}

),

agents as (

    select * from {{ ref('stg_ops__agents') }}

),

user_counts as (

    select
        department_key,
        count(*) as user_count

    from users
    where is_active and department_key is not null
    group by department_key

),

agent_counts as (

    select
        department_key,
        count(*) as agent_count,
        sum(case when is_active then 1 else 0 end) as active_agent_count

    from agents
    where status <> 'retired'
    group by department_key

),

final as (

    select
        departments.department_key,
        departments.tenant_id,
        departments.department_id,
        departments.department_name,
        tenants.display_name as tenant_display_name,
        departments.cost_centre,
        departments.budget_hard_usd,
        departments.budget_soft_usd,
        departments.status,
        departments.is_active,

        cast(coalesce(user_counts.user_count, 0) as integer) as user_count,
        cast(coalesce(agent_counts.agent_count, 0) as integer) as agent_count,
        cast(coalesce(agent_counts.active_agent_count, 0) as integer) as active_agent_count,

        departments.config_version

    from departments
    left join tenants on departments.tenant_id = tenants.tenant_id
    left join user_counts on departments.department_key = user_counts.department_key
    left join agent_counts on departments.department_key = agent_counts.department_key

)

select * from final
