with

source as (

    select * from {{ source('ops', 'events') }}

),

renamed as (

    select
        -- ids
        cast(seq as bigint) as seq,
        event_id,
        tenant_id,
        agent_id,
        run_id,

        -- what happened
        kind as event_kind,
        name as event_name,
        payload as payload_json,

        -- when
        occurred_at,
        recorded_at,

        -- lineage
        _loaded_at as loaded_at

    from source

),

final as (

    select
        seq,
        event_id,
        tenant_id,
        agent_id,
        run_id,
        event_kind,
        event_name,
        payload_json,
        occurred_at,
        recorded_at,
        loaded_at

    from renamed

)

select * from final
