with

source as (

    select * from {{ source('ops', 'departments') }}

),

renamed as (

    select
        -- ids
        tenant_id,
        department_id,

        -- attributes
        name as department_name,
        cost_centre,
        status,

        -- monthly budgets; NULL when the department has none of its own
        cast(budget_hard_usd as numeric(18, 8)) as budget_hard_usd,
        cast(budget_soft_usd as numeric(18, 8)) as budget_soft_usd,

        -- lineage
        cast(config_version as integer) as config_version,
        _loaded_at as loaded_at

    from source

),

final as (

    select
        {{ tenant_scoped_key('tenant_id', 'department_id') }} as department_key,
        tenant_id,
        department_id,
        department_name,
        cost_centre,
        budget_hard_usd,
        budget_soft_usd,
        status,
        status = 'active' as is_active,
        config_version,
        loaded_at

    from renamed

)

select * from final
