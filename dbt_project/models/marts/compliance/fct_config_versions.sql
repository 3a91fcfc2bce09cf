with

config_versions as (

    select * from {{ ref('stg_ops__config_versions') }}

),

audit_records as (

    select * from {{ ref('stg_ops__audit_records') }}

),

-- the audit record written in the same transaction as each version
apply_records as (

    select
        cast(target_id as integer) as config_version,
        record_id as audit_record_id,
        actor as audit_actor,
        {{ json_array_length('details_json', 'changes') }} as change_count

    from audit_records
    where target_type = 'config_version'
        and action in ('config.apply', 'config.rollback')

),

versioned as (

    select
        config_versions.*,

        count(*) over (
            order by config_versions.config_version
            rows between unbounded preceding and current row
        ) as versions_to_date,
        sum(case when config_versions.is_rollback then 1 else 0 end) over (
            order by config_versions.config_version
            rows between unbounded preceding and current row
        ) as rollbacks_to_date,
        lag(config_versions.config_version) over (order by config_versions.config_version)
            as previous_config_version,
        lag(config_versions.applied_at) over (order by config_versions.config_version)
            as previous_applied_at,
        max(config_versions.config_version) over () as latest_config_version

    from config_versions

),

final as (

    select
        versioned.config_version,
        versioned.applied_at,
        versioned.applied_by,
        versioned.fingerprint,
        versioned.config_source,
        versioned.summary,
        apply_records.change_count,

        -- rollbacks
        versioned.is_rollback,
        versioned.rollback_of_version,

        -- position in the history
        cast(versioned.versions_to_date as integer) as versions_to_date,
        cast(versioned.rollbacks_to_date as integer) as rollbacks_to_date,
        versioned.previous_config_version,
        versioned.previous_applied_at,
        versioned.config_version = versioned.latest_config_version as is_current,

        -- evidence
        apply_records.audit_record_id

    from versioned
    left join apply_records on versioned.config_version = apply_records.config_version

)

select * from final
