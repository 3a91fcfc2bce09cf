{#-
    Month-to-date spend against every budget scope (platform, tenant, department, agent), for every month
    with spend and for the current month (`as_of_date`), with the burn rate, the forecast to month end and
    the projected dates of crossing the soft and hard limits at that burn rate.

    For the current month days_elapsed counts as_of_date itself; past months are complete. Sandbox spend
    counts: the gateway charges it against the same budgets.
-#}
with

cost_daily as (

    select * from {{ ref('fct_cost_daily') }}

),

scopes as (

    select * from {{ ref('int_budget_scopes_unioned') }}

),

as_of as (

    select {{ as_of_date() }} as as_of_date

),

monthly_spend as (

    select
        {{ month_start('cost_date') }} as month_start,
        tenant_id,
        department_id,
        agent_id,
        sum(cost_usd) as cost_usd

    from cost_daily
    where cost_date <= (select as_of_date from as_of)
    group by {{ month_start('cost_date') }}, tenant_id, department_id, agent_id

),

months as (

    select distinct month_start from monthly_spend
    union
    select {{ month_start('as_of_date') }} from as_of

),

scope_months as (

    select months.month_start, scopes.*
    from months
    cross join scopes

),

spend_by_scope as (

    select
        scope_months.month_start,
        scope_months.budget_level,
        scope_months.scope_id,
        coalesce(sum(monthly_spend.cost_usd), 0) as spend_mtd_usd

    from scope_months
    left join monthly_spend
        on monthly_spend.month_start = scope_months.month_start
        and (
            scope_months.budget_level = 'platform'
            or (scope_months.budget_level = 'tenant' and monthly_spend.tenant_id = scope_months.tenant_id)
            or (
                scope_months.budget_level = 'department'
                and monthly_spend.tenant_id = scope_months.tenant_id
                and monthly_spend.department_id = scope_months.department_id
            )
            or (scope_months.budget_level = 'agent' and monthly_spend.agent_id = scope_months.agent_id)
        )
    group by scope_months.month_start, scope_months.budget_level, scope_months.scope_id

),

measured as (

    select
        scope_months.month_start,
        scope_months.budget_level,
        scope_months.scope_id,
        scope_months.tenant_id,
        scope_months.department_id,
        scope_months.agent_id,
        scope_months.soft_limit_usd,
        scope_months.hard_limit_usd,
        cast(spend_by_scope.spend_mtd_usd as numeric(18, 8)) as spend_mtd_usd,
        {{ days_in_month('scope_months.month_start') }} as days_in_month,
        case
            when {{ month_start('as_of.as_of_date') }} = scope_months.month_start
                then cast(extract(day from as_of.as_of_date) as integer)
            else {{ days_in_month('scope_months.month_start') }}
        end as days_elapsed,
        as_of.as_of_date

    from scope_months
    inner join spend_by_scope
        on spend_by_scope.month_start = scope_months.month_start
        and spend_by_scope.budget_level = scope_months.budget_level
        and spend_by_scope.scope_id = scope_months.scope_id
    cross join as_of

),

forecast as (

    select
        *,
        cast(round(spend_mtd_usd / days_elapsed, 8) as numeric(18, 8)) as daily_burn_usd,
        cast(round(spend_mtd_usd / days_elapsed * days_in_month, 8) as numeric(18, 8)) as forecast_month_end_usd

    from measured

),

projected as (

    select
        *,
        {%- for limit in ['soft', 'hard'] %}
        -- The day spend reaches the {{ limit }} limit at the current burn rate, if that falls within the month
        -- still to come; NULL when already crossed (see status), never reached, or there is no limit.
        case
            when {{ limit }}_limit_usd is null or spend_mtd_usd >= {{ limit }}_limit_usd or daily_burn_usd <= 0
                then null
            when days_elapsed >= days_in_month then null
            when ceil(({{ limit }}_limit_usd - spend_mtd_usd) / daily_burn_usd) <= days_in_month - days_elapsed
                then {{ add_days(add_days('month_start', 'days_elapsed - 1'),
                                 'ceil((' ~ limit ~ '_limit_usd - spend_mtd_usd) / daily_burn_usd)') }}
        end as projected_{{ limit }}_cross_date{{ ',' if not loop.last }}
        {%- endfor %}

    from forecast

),

final as (

    select
        month_start,
        budget_level,
        scope_id,
        tenant_id,
        department_id,
        agent_id,
        soft_limit_usd,
        hard_limit_usd,
        spend_mtd_usd,
        days_elapsed,
        days_in_month,
        daily_burn_usd,
        forecast_month_end_usd,
        projected_soft_cross_date,
        projected_hard_cross_date,
        case
            when hard_limit_usd is not null and spend_mtd_usd >= hard_limit_usd then 'hard_exceeded'
            when soft_limit_usd is not null and spend_mtd_usd >= soft_limit_usd then 'soft_exceeded'
            when hard_limit_usd is not null and forecast_month_end_usd > hard_limit_usd then 'forecast_over'
            when soft_limit_usd is not null and forecast_month_end_usd > soft_limit_usd then 'forecast_over'
            else 'ok'
        end as status,
        as_of_date

    from projected

)

select * from final
