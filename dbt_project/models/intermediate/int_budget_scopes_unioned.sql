{#-
    Every budget scope with its monthly limits, one row per scope: the platform (limits from the latest
    applied config), each tenant, department and agent (limits NULL where none is configured).
-#}
with

config_versions as (

    select * from {{ ref('stg_ops__config_versions') }}

),

tenants as (

    select * from {{ ref('stg_ops__tenants') }}

),

departments as (

    select * from {{ ref('stg_ops__departments') }}

),

agents as (

    select * from {{ ref('stg_ops__agents') }}

),

latest_config as (

    select * from config_versions
    where config_version = (select max(config_version) from config_versions)

),

platform as (

    select
        'platform' as budget_level,
        'platform' as scope_id,
        cast(null as {{ dbt.type_string() }}) as tenant_id,
        cast(null as {{ dbt.type_string() }}) as department_id,
        cast(null as {{ dbt.type_string() }}) as agent_id,
        platform_budget_soft_usd as soft_limit_usd,
        platform_budget_hard_usd as hard_limit_usd
    from latest_config

),

tenant_scopes as (

    select
        'tenant' as budget_level,
        tenant_id as scope_id,
        tenant_id,
        cast(null as {{ dbt.type_string() }}) as department_id,
        cast(null as {{ dbt.type_string() }}) as agent_id,
        budget_soft_usd as soft_limit_usd,
        budget_hard_usd as hard_limit_usd
    from tenants
    where is_active

),

department_scopes as (

    select
        'department' as budget_level,
        department_key as scope_id,
        tenant_id,
        department_id,
        cast(null as {{ dbt.type_string() }}) as agent_id,
        budget_soft_usd as soft_limit_usd,
        budget_hard_usd as hard_limit_usd
    from departments
    where is_active

),

agent_scopes as (

    select
        'agent' as budget_level,
        agent_id as scope_id,
        tenant_id,
        department_id,
        agent_id,
        budget_soft_usd as soft_limit_usd,
        budget_hard_usd as hard_limit_usd
    from agents
    where status <> 'retired'

),

final as (

    select * from platform
    union all
    select * from tenant_scopes
    union all
    select * from department_scopes
    union all
    select * from agent_scopes

)

select * from final
