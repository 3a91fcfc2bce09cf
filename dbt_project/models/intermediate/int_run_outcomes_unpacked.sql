{#- What each finished run produced: one row per (run, outcome kind) from run_finished `outcomes`. -#}
with

finished as (

    select * from {{ ref('stg_ops__run_events') }}
    where event_name = 'run_finished' and outcomes_json is not null

),

unpacked as (

    select
        finished.run_id,
        finished.tenant_id,
        finished.agent_id,
        entries.entry_key as outcome,
        cast(entries.entry_value as bigint) as outcome_count

    from finished
    {{ json_object_entries('finished.outcomes_json', 'entries') }}

),

final as (

    -- A duplicated run_finished must not double a run's outcomes.
    select run_id, tenant_id, agent_id, outcome, max(outcome_count) as outcome_count
    from unpacked
    where outcome_count > 0
    group by run_id, tenant_id, agent_id, outcome

)

select * from final
