with

source as (

    select * from {{ source('ops', 'config_versions') }}

),

renamed as (

    select
        -- ids
        cast(version as integer) as config_version,
        cast(rollback_of as integer) as rollback_of_version,

        -- attributes
        applied_at,
        applied_by,
        fingerprint,
        source as config_source,
        summary,

        -- the platform-wide monthly budget, held only in the applied config itself
        cast({{ json_extract_text('content', 'platform.platform.budget.monthly_hard_usd') }} as numeric(18, 8))
            as platform_budget_hard_usd,
        cast({{ json_extract_text('content', 'platform.platform.budget.monthly_soft_usd') }} as numeric(18, 8))
            as platform_budget_soft_usd,

        -- lineage
        _loaded_at as loaded_at

    from source

),

final as (

    select
        config_version,
        applied_at,
        applied_by,
        fingerprint,
        config_source,
        summary,
        rollback_of_version,
        rollback_of_version is not null as is_rollback,
        platform_budget_hard_usd,
        platform_budget_soft_usd,
        loaded_at

    from renamed

)

select * from final
