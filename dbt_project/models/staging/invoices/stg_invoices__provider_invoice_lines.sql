with

source as (

    select * from {{ source('invoices', 'provider_invoice_lines') }}

),

renamed as (

    select
        -- ids
        invoice_id,
        tenant_id,

        -- what was billed
        cast(usage_date as date) as usage_date,
        provider,
        model_name,
        cast(cost_usd as numeric(18, 8)) as cost_usd,
        coalesce(cast(input_tokens as bigint), 0) as input_tokens,
        coalesce(cast(output_tokens as bigint), 0) as output_tokens,

        -- lineage
        imported_at

    from source

)

select * from renamed
