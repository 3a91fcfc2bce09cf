with

source as (

    select * from {{ source('ops', 'audit_records') }}

),

renamed as (

    select
        -- ids
        cast(seq as bigint) as seq,
        record_id,
        tenant_id,

        -- what happened
        occurred_at,
        actor,
        action,
        target_type,
        target_id,
        details as details_json,

        -- the hash chain
        prev_hash,
        record_hash,

        -- lineage
        _loaded_at as loaded_at

    from source

),

final as (

    select
        seq,
        record_id,
        tenant_id,
        occurred_at,
        actor,
        action,
        -- `config.apply` -> `config`: the area of the platform the action belongs to
        split_part(action, '.', 1) as action_domain,
        target_type,
        target_id,
        details_json,
        prev_hash,
        record_hash,
        loaded_at

    from renamed

)

select * from final
