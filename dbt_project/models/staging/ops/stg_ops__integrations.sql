with

source as (

    select * from {{ source('ops', 'integrations') }}

),

renamed as (

    select
        -- ids
        tenant_id,
        integration_id,

        -- attributes
        kind as connector_kind,
        schedule,
        status,

        -- the connector's config entry; credentials are references, never values
        spec as spec_json,

        -- lineage
        cast(config_version as integer) as config_version,
        _loaded_at as loaded_at

    from source

),

final as (

    select
        {{ tenant_scoped_key('tenant_id', 'integration_id') }} as integration_key,
        tenant_id,
        integration_id,
        connector_kind,
        schedule,
        status,
        status = 'active' as is_active,
        {{ json_extract_text('spec_json', 'credential') }} is not null as has_credential,
        {{ json_array_length('spec_json', 'allowed_hosts') }} as allowed_host_count,
        spec_json,
        config_version,
        loaded_at

    from renamed

)

select * from final
