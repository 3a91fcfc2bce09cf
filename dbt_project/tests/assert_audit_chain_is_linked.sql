-- The audit trail is one hash chain per tenant (platform-level records form their own chain): each
-- record's prev_hash must be the record_hash of the record before it in the same chain, in seq
-- order, and the first record's must be the genesis hash (64 zeros). Returns the
-- records where the chain breaks (a deleted, reordered or half-loaded record). Recomputing the
-- SHA-256 itself is governance's job (agentprovision.store.audit.verify_chain); this checks that
-- the warehouse copy is complete and in order.
with

audit_events as (

    select
        seq,
        record_id,
        prev_hash,
        lag(record_hash) over (partition by tenant_id order by seq) as previous_record_hash

    from {{ ref('fct_audit_events') }}

)

select *
from audit_events
where prev_hash <> coalesce(previous_record_hash, repeat('0', 64))
