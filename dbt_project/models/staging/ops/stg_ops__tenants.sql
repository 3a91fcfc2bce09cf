with

source as (

    select * from {{ source('ops', 'tenants') }}

),

renamed as (

    select
        -- ids
        tenant_id,

        -- attributes
        display_name,
        region,
        plan,
        cast(max_concurrent_runs as integer) as max_concurrent_runs,
        status,

        -- monthly budgets
        cast(budget_hard_usd as numeric(18, 8)) as budget_hard_usd,
        cast(budget_soft_usd as numeric(18, 8)) as budget_soft_usd,

        -- lineage
        cast(config_version as integer) as config_version,
        updated_at,
        removed_at,
        _loaded_at as loaded_at

    from source

),

final as (

    select
        tenant_id,
        display_name,
        region,
        plan,
        max_concurrent_runs,
        budget_hard_usd,
        budget_soft_usd,
        status,
        status = 'active' as is_active,
        config_version,
        updated_at,
        removed_at,
        loaded_at

    from renamed

)

select * from final
