with

source as (

    select * from {{ source('ops', 'users') }}

),

renamed as (

    select
        -- ids
        user_id,
        tenant_id,
        department_id,

        -- attributes
        name as user_name,
        role,
        status,

        -- lineage
        cast(config_version as integer) as config_version,
        _loaded_at as loaded_at

    from source

),

final as (

    select
        user_id,
        tenant_id,
        department_id,
        {{ tenant_scoped_key('tenant_id', 'department_id') }} as department_key,
        user_name,
        role,
        status,
        status = 'active' as is_active,
        tenant_id is null as is_platform_user,
        config_version,
        loaded_at

    from renamed

)

select * from final
