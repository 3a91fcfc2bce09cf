with

deployments as (

    select * from {{ ref('stg_ops__model_deployments') }}

),

tenants as (

    select * from {{ ref('stg_ops__tenants') }}

),

final as (

    select
        deployments.deployment_id,
        deployments.model_name,
        deployments.provider,
        deployments.litellm_model,

        -- what it can do; tier_rank orders tiers so "at least tier X" is a comparison
        deployments.tier,
        case deployments.tier
            when 'basic' then 1
            when 'standard' then 2
            when 'advanced' then 3
        end as tier_rank,
        deployments.context_window,
        deployments.regions_json,
        deployments.region_count,

        -- whose it is: NULL tenant means the shared catalogue
        deployments.tenant_id,
        tenants.display_name as tenant_display_name,
        deployments.tenant_id is null as is_shared,

        -- what it costs, when negotiated
        deployments.contract_input_per_mtok_usd,
        deployments.contract_output_per_mtok_usd,
        deployments.contract_cached_input_per_mtok_usd,
        deployments.contract_input_per_mtok_usd is not null as has_contract_price,

        deployments.status,
        deployments.is_active,
        deployments.config_version

    from deployments
    left join tenants on deployments.tenant_id = tenants.tenant_id

)

select * from final
