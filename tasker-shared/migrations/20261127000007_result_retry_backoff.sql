-- A step result whose processing failed comes back soon instead of after the whole visibility
-- timeout.
--
-- Why: process_next_results catches a failure of one result (its own subtransaction, rolled
-- back) and used to leave the message hidden for p_vt_seconds, 30 s in the orchestrator. An
-- end-to-end run with two orchestrators and two workers once timed out that way, a step left
-- in enqueued_for_orchestration with its result waiting out the timeout. Whatever failed, the
-- step's state is unchanged and the result can be tried again; a conflict with a concurrent
-- transaction (a lock timeout, a deadlock) succeeds on the next try. Now the message is hidden
-- for 0.1 s after a failed first read, doubling with every further read up to p_vt_seconds, so
-- a result that keeps failing does not spin; the orchestrator's fallback poll picks it up.

CREATE OR REPLACE FUNCTION tasker.process_next_results(
    p_queue      text,
    p_vt_seconds double precision,
    p_limit      integer,
    p_processor  text
) RETURNS TABLE (
    msg_id             bigint,
    task_uuid          uuid,
    workflow_step_uuid uuid,
    error              text,
    ignored_reason     text,
    step_state         text,
    enqueued           uuid[],
    task_outcome       text,
    next_retry_at      timestamptz,
    retry_at           timestamptz
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    m    record;
    r    record;
    uuid_pattern constant text := '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
BEGIN
    FOR m IN SELECT * FROM tasker.queue_read(p_queue, p_vt_seconds, p_limit) LOOP
        msg_id := m.msg_id;
        task_uuid := NULL; workflow_step_uuid := NULL; error := NULL; ignored_reason := NULL;
        step_state := NULL; enqueued := NULL; task_outcome := NULL; next_retry_at := NULL;
        retry_at := NULL;
        IF coalesce(m.message ->> 'task_uuid', '') !~* uuid_pattern
           OR coalesce(m.message ->> 'workflow_step_uuid', '') !~* uuid_pattern
           OR coalesce(m.message ->> 'attempt', '') !~ '^[0-9]{1,9}$'
           OR coalesce(m.message ->> 'outcome', '') NOT IN ('success', 'retryable_failure', 'permanent_failure') THEN
            PERFORM tasker.queue_archive_message(p_queue, m.msg_id);
            error := 'not a step result message; archived';
            RETURN NEXT;
            CONTINUE;
        END IF;
        task_uuid := (m.message ->> 'task_uuid')::uuid;
        workflow_step_uuid := (m.message ->> 'workflow_step_uuid')::uuid;
        BEGIN
            SELECT * INTO r FROM tasker.process_step_result(
                task_uuid, workflow_step_uuid, (m.message ->> 'attempt')::integer,
                m.message ->> 'outcome', m.message -> 'error', p_processor, p_queue, m.msg_id);
            ignored_reason := r.ignored_reason;
            step_state := r.step_state;
            enqueued := r.enqueued;
            task_outcome := r.task_outcome;
            next_retry_at := r.next_retry_at;
            retry_at := r.retry_at;
        EXCEPTION WHEN OTHERS THEN
            error := SQLERRM;
            UPDATE tasker.queue_messages q
               SET vt = clock_timestamp()
                        + make_interval(secs => least(p_vt_seconds, 0.05 * 2 ^ least(m.read_ct, 20)))
             WHERE q.msg_id = m.msg_id;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
