{#-
    Incremental: the raw audit trail is append-only and loaded exactly once, so each run only needs the
    records past the newest seq already here, plus any record loaded since the last build: the loader
    fills a seq that committed late (below its watermark, see agentprovision/watermarks.py) in a later load.
    Denormalised tenant names are as of when a record was first built here; `--full-refresh`
    restates them.
-#}
{{
    config(
        materialized='incremental',
        unique_key='seq',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns'
    )
}}

with

audit_records as (

    select * from {{ ref('stg_ops__audit_records') }}

    {% if is_incremental() %}
    where seq > (select coalesce(max(seq), 0) from {{ this }})
        or loaded_at > (
            select coalesce(max(loaded_at), cast('1900-01-01 00:00:00+00' as timestamp with time zone))
            from {{ this }}
        )
    {% endif %}

),

tenants as (

    select * from {{ ref('stg_ops__tenants') }}

),

final as (

    select
        audit_records.seq,
        audit_records.record_id,
        audit_records.occurred_at,

        -- who and where
        audit_records.actor,
        audit_records.tenant_id,
        tenants.display_name as tenant_display_name,
        audit_records.tenant_id is null as is_platform_action,

        -- what
        audit_records.action,
        audit_records.action_domain,
        audit_records.target_type,
        audit_records.target_id,
        case
            when audit_records.target_type = 'config_version' then cast(audit_records.target_id as integer)
        end as config_version,
        audit_records.details_json,

        -- the hash chain
        audit_records.prev_hash,
        audit_records.record_hash,

        audit_records.loaded_at

    from audit_records
    left join tenants on audit_records.tenant_id = tenants.tenant_id

)

select * from final
