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
        loaded_at

    from renamed

)

select * from final
