with

source as (

    select * from {{ source('ops', 'model_deployments') }}

),

renamed as (

    select
        -- ids
        deployment_id,
        tenant_id,

        -- attributes
        model_name,
        provider,
        tier,
        regions as regions_json,
        cast(context_window as integer) as context_window,
        status,

        -- the whole config entry: litellm_params and model_info
        spec as spec_json,

        -- lineage
        cast(config_version as integer) as config_version,
        _loaded_at as loaded_at

    from source

),

final as (

    select
        deployment_id,
        tenant_id,
        model_name,
        provider,
        {{ json_extract_text('spec_json', 'litellm_params.model') }} as litellm_model,
        tier,
        regions_json,
        {{ json_array_length('regions_json') }} as region_count,
        context_window,

        -- negotiated contract prices per million tokens; NULL means LiteLLM's list price applies
        cast({{ json_extract_text('spec_json', 'model_info.contract_price.input_per_mtok_usd') }} as numeric(18, 8))
            as contract_input_per_mtok_usd,
        cast({{ json_extract_text('spec_json', 'model_info.contract_price.output_per_mtok_usd') }} as numeric(18, 8))
            as contract_output_per_mtok_usd,
        cast(
            {{ json_extract_text('spec_json', 'model_info.contract_price.cached_input_per_mtok_usd') }}
            as numeric(18, 8)
        ) as contract_cached_input_per_mtok_usd,

        status,
        status = 'active' as is_active,
        spec_json,
        config_version,
        loaded_at

    from renamed

)

select * from final
