{{
    config(
        materialized='incremental',
        unique_key='run_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

{#-
    One row per agent run, from its lifecycle events. A run is rebuilt from ALL its events whenever any of
    them is new, so a run_started arriving after its run_finished (late) cannot overwrite the finished row.
    Runs with only run_started so far have status `running`.
-#}
with

run_events as (

    select * from {{ ref('stg_ops__run_events') }}
    where run_id is not null
    {% if is_incremental() %}
        and run_id in (
            select run_id from {{ ref('stg_ops__run_events') }}
            where {{ late_event_filter(built_time_column='coalesce(finished_at, started_at)') }}
        )
    {% endif %}

),

started as (

    select
        run_id,
        min(occurred_at) as started_at,
        max(task_id) as task_id,
        max(tenant_id) as tenant_id,
        max(department_id) as department_id,
        max(agent_id) as agent_id,
        max(agent_type) as agent_type,
        max(agent_version) as agent_version,
        max(config_hash) as config_hash,
        max(run_source) as run_source

    from run_events
    where event_name = 'run_started'
    group by run_id

),

finished as (

    -- One run_finished per run; should a duplicate slip in, the latest one counts.
    select * from (
        select
            run_events.*,
            row_number() over (partition by run_id order by occurred_at desc, seq desc) as rn
        from run_events
        where event_name = 'run_finished'
    ) as ranked
    where rn = 1

),

outcome_counts as (

    select run_id, sum(outcome_count) as outcomes_count
    from {{ ref('int_run_outcomes_unpacked') }}
    {% if is_incremental() %}
    where run_id in (select run_id from finished)
    {% endif %}
    group by run_id

),

approvals as (

    select
        run_id,
        count(case when event_name = 'run_needs_approval' then 1 end) as approvals_requested,
        count(case when event_name = 'run_rejected' then 1 end) as approvals_rejected,
        max(loaded_at) as loaded_at

    from run_events
    group by run_id

),

runs as (

    select coalesce(finished.run_id, started.run_id) as run_id
    from started
    full outer join finished on started.run_id = finished.run_id

),

final as (

    select
        runs.run_id,
        coalesce(finished.task_id, started.task_id) as task_id,
        coalesce(finished.tenant_id, started.tenant_id) as tenant_id,
        coalesce(finished.department_id, started.department_id) as department_id,
        coalesce(finished.agent_id, started.agent_id) as agent_id,
        coalesce(finished.agent_type, started.agent_type) as agent_type,
        coalesce(finished.agent_version, started.agent_version) as agent_version,
        coalesce(finished.config_hash, started.config_hash) as config_hash,
        started.run_source,
        coalesce(finished.status, 'running') as status,
        finished.error_class,
        coalesce(started.started_at, finished.reported_started_at) as started_at,
        finished.occurred_at as finished_at,
        {{ utc_date('coalesce(started.started_at, finished.reported_started_at, finished.occurred_at)') }}
            as run_date,
        finished.duration_ms,
        coalesce(finished.steps, 0) as steps,
        coalesce(finished.llm_calls, 0) as llm_calls,
        coalesce(finished.tool_calls, 0) as tool_calls,
        coalesce(finished.prompt_tokens, 0) as prompt_tokens,
        coalesce(finished.completion_tokens, 0) as completion_tokens,
        coalesce(finished.cost_usd, 0) as cost_usd,
        cast(coalesce(outcome_counts.outcomes_count, 0) as bigint) as outcomes_count,
        approvals.approvals_requested,
        approvals.approvals_rejected,
        approvals.loaded_at

    from runs
    left join started on runs.run_id = started.run_id
    left join finished on runs.run_id = finished.run_id
    left join outcome_counts on runs.run_id = outcome_counts.run_id
    left join approvals on runs.run_id = approvals.run_id

)

select * from final
