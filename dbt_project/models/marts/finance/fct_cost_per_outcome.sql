{#-
    What a business outcome costs, per tenant, agent and outcome kind (tickets opened, reports delivered...),
    from finished runs and the outcomes their run_finished events report. A run producing two kinds of outcome
    counts its whole cost towards each, so costs across outcome kinds of one agent do not add up.
-#}
with

runs as (

    select * from {{ ref('fct_agent_runs') }}

),

outcomes as (

    select * from {{ ref('int_run_outcomes_unpacked') }}

),

final as (

    select
        runs.tenant_id,
        runs.agent_id,
        outcomes.outcome,
        count(distinct runs.run_id) as runs,
        cast(sum(outcomes.outcome_count) as bigint) as outcomes,
        cast(sum(runs.cost_usd) as numeric(18, 8)) as cost_usd,
        cast(round(sum(runs.cost_usd) / sum(outcomes.outcome_count), 8) as numeric(18, 8)) as cost_per_outcome_usd

    from runs
    inner join outcomes on runs.run_id = outcomes.run_id
    group by runs.tenant_id, runs.agent_id, outcomes.outcome

)

select * from final
