with

users as (

    select * from {{ ref('stg_ops__users') }}

),

tenants as (

    select * from {{ ref('stg_ops__tenants') }}

),

departments as (

    select * from {{ ref('stg_ops__departments') }}

),

final as (

    select
        users.user_id,
        users.user_name,
        users.role,
        users.is_platform_user,
        users.tenant_id,
        tenants.display_name as tenant_display_name,
        users.department_key,
        users.department_id,
        departments.department_name,
        departments.cost_centre,
        users.status,
        users.is_active,
        users.config_version

    from users
    -- platform users have no tenant and many tenant users no department: keep them all
    left join tenants on users.tenant_id = tenants.tenant_id
    left join departments on users.department_key = departments.department_key

)

select * from final
