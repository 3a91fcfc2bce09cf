{#- Every version of every agent's config, from the snapshot: which config was live when. -#}
with

snapshot as (

    select * from {{ ref('snap_ops__agents') }}

),

final as (

    select
        {{ dbt.concat(['agent_id', "'@'", 'cast(config_version as ' ~ dbt.type_string() ~ ')']) }} as agent_version_key,
        agent_id,
        tenant_id,
        department_id,
        name as agent_name,
        agent_type,
        version,
        cast(config_version as integer) as config_version,
        status,
        owner as owner_user_id,
        schedule,
        spec as spec_json,
        dbt_valid_from as valid_from,
        dbt_valid_to as valid_to,
        dbt_valid_to is null as is_current,
        row_number() over (partition by agent_id order by dbt_valid_from) as version_seq

    from snapshot

)

select * from final
