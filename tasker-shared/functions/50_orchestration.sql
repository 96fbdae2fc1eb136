-- The orchestrator's path: enqueue ready steps, pick up waiting tasks, process results and
-- finalise tasks. Every path that moves a task locks its row first, so two results of one
-- task (two branches of a diamond finishing together) are processed one after the other.
--
-- enqueue_steps runs with sequential and bitmap scans off, for the reason given in
-- 10_transitions.sql; process_next_results too, for the queue read's (30_queues.sql).

-- Moves every listed step of p_task_uuid that is still pending or waiting for a retry to
-- enqueued, records its transition and sends its message on p_queue, in one statement, with
-- one notification. The steps are locked in a fixed order, so concurrent callers cannot
-- deadlock. Returns the steps moved; the rest were taken by a concurrent writer.
CREATE OR REPLACE FUNCTION tasker.enqueue_steps(
    p_task_uuid  uuid,
    p_step_uuids uuid[],
    p_queue      text,
    p_processor  text
) RETURNS uuid[]
LANGUAGE plpgsql
-- key probes only, see the note at the top of this file
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    moved uuid[];
BEGIN
    IF p_step_uuids IS NULL OR cardinality(p_step_uuids) = 0 THEN
        RETURN '{}';
    END IF;
    WITH locked AS (
        SELECT s.workflow_step_uuid, s.current_state
          FROM tasker.workflow_steps s
         WHERE s.workflow_step_uuid = ANY (p_step_uuids)
           AND s.task_uuid = p_task_uuid
           AND s.current_state IN ('pending', 'waiting_for_retry')
         ORDER BY s.workflow_step_uuid
           FOR UPDATE
    ), updated AS (
        UPDATE tasker.workflow_steps s
           SET current_state = 'enqueued',
               in_process = true,
               processed = false,
               updated_at = now()
          FROM locked
         WHERE s.workflow_step_uuid = locked.workflow_step_uuid
        RETURNING s.workflow_step_uuid, s.task_uuid, s.attempts, s.created_at,
                  locked.current_state AS previous
    ), retired AS (
        UPDATE tasker.workflow_step_transitions t
           SET most_recent = false
          FROM updated u
         WHERE t.workflow_step_uuid = u.workflow_step_uuid AND t.most_recent
        RETURNING t.workflow_step_uuid, t.sort_key
    ), recorded AS (
        INSERT INTO tasker.workflow_step_transitions
            (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
        SELECT u.workflow_step_uuid, u.previous, 'enqueued', coalesce(r.sort_key, 0) + 1, true,
               p_processor, '{}'::jsonb
          FROM updated u
          LEFT JOIN retired r ON r.workflow_step_uuid = u.workflow_step_uuid
    ), sent AS (
        -- message ids follow the steps' creation order; the
        -- message asks for the attempt the claim will make (the claim increments attempts)
        INSERT INTO tasker.queue_messages (queue_name, message)
        SELECT p_queue, jsonb_build_object('task_uuid', u.task_uuid,
                                           'workflow_step_uuid', u.workflow_step_uuid,
                                           'attempt', u.attempts + 1)
          FROM updated u
         ORDER BY u.created_at, u.workflow_step_uuid
    )
    SELECT array_agg(u.workflow_step_uuid) INTO moved FROM updated u;
    IF moved IS NULL THEN
        RETURN '{}';
    END IF;
    PERFORM pg_notify(tasker.queue_channel(p_queue), 'batch');
    RETURN moved;
END
$$;

-- Picks up a task waiting to be worked on (pending, waiting_for_dependencies or
-- waiting_for_retry): enqueuing_steps, its ready steps enqueued, then steps_in_process (or
-- waiting_for_dependencies when nothing could be enqueued), both transitions recorded by one
-- statement. NULL when the task is in any other state: another orchestrator has it, or it
-- moved on.
CREATE OR REPLACE FUNCTION tasker.pick_up_task(p_task_uuid uuid, p_processor text)
RETURNS uuid[]
LANGUAGE plpgsql AS $$
DECLARE
    current_state text;
    queue         text;
    ready         uuid[];
    enqueued      uuid[];
BEGIN
    SELECT t.current_state, ns.name || '_queue' INTO current_state, queue
      FROM tasker.tasks t
      JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
      JOIN tasker.namespaces ns ON ns.namespace_uuid = nt.namespace_uuid
     WHERE t.task_uuid = p_task_uuid
       FOR UPDATE OF t;
    IF NOT FOUND OR current_state NOT IN ('pending', 'waiting_for_dependencies', 'waiting_for_retry') THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(r.workflow_step_uuid) INTO ready
      FROM tasker.get_step_readiness_status(p_task_uuid) r
     WHERE r.ready_for_execution;
    enqueued := tasker.enqueue_steps(p_task_uuid, ready, queue, p_processor);
    PERFORM tasker.transition_task_state_through(
        p_task_uuid,
        ARRAY[current_state, 'enqueuing_steps',
              CASE WHEN cardinality(enqueued) > 0 THEN 'steps_in_process' ELSE 'waiting_for_dependencies' END],
        p_processor);
    RETURN enqueued;
END
$$;

-- Finalises a task, already locked by the caller, from a summary of its steps the caller
-- already has (task_step_summary): complete, blocked_by_failures, waiting_for_retry (with
-- when the earliest backoff ends) or waiting_for_dependencies, always by way of
-- evaluating_results. A finished task (complete, blocked) is announced on tasker_task_finished
-- in the same transaction. Outcomes: not_finished (work is ready or running, or the task is
-- terminal), completed, blocked, waiting_for_retry, waiting_for_dependencies.
CREATE OR REPLACE FUNCTION tasker.finalize_locked_task(
    p_task_uuid     uuid,
    p_processor     text,
    p_current_state text,
    p_ready_steps   uuid[],
    p_in_process    integer,
    p_failed        integer,
    p_completed     integer,
    p_total         integer,
    p_retrying      integer,
    p_next_retry_at timestamptz
) RETURNS TABLE (outcome text, next_retry_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    target  text;
    verdict text;
BEGIN
    IF p_current_state IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN
        RETURN QUERY SELECT 'not_finished'::text, NULL::timestamptz;
        RETURN;
    END IF;
    IF p_ready_steps IS NOT NULL OR p_in_process > 0 THEN
        RETURN QUERY SELECT 'not_finished'::text, NULL::timestamptz;
        RETURN;
    ELSIF p_failed > 0 THEN
        target := 'blocked_by_failures'; verdict := 'blocked';
    ELSIF p_completed = p_total THEN
        target := 'complete'; verdict := 'completed';
    ELSIF p_retrying > 0 THEN
        target := 'waiting_for_retry'; verdict := 'waiting_for_retry';
    ELSE
        target := 'waiting_for_dependencies'; verdict := 'waiting_for_dependencies';
    END IF;
    IF p_current_state <> target THEN
        IF p_current_state = 'evaluating_results' THEN
            PERFORM tasker.transition_task_state_through(
                p_task_uuid, ARRAY['evaluating_results', target], p_processor);
        ELSE
            -- the task state machine allows evaluating_results only from these
            IF p_current_state NOT IN ('steps_in_process', 'waiting_for_dependencies',
                                       'waiting_for_retry', 'blocked_by_failures') THEN
                RAISE EXCEPTION 'illegal task transition: % -> evaluating_results (task %)',
                    p_current_state, p_task_uuid USING ERRCODE = 'check_violation';
            END IF;
            PERFORM tasker.transition_task_state_through(
                p_task_uuid, ARRAY[p_current_state, 'evaluating_results', target], p_processor);
        END IF;
        IF target IN ('complete', 'blocked_by_failures') THEN
            PERFORM pg_notify('tasker_task_finished', p_task_uuid::text);
        END IF;
    END IF;
    RETURN QUERY SELECT verdict,
                        CASE WHEN verdict = 'waiting_for_retry' THEN p_next_retry_at END;
END
$$;

-- finalize_locked_task for a caller that holds nothing: locks the task and summarises its
-- steps first. Same rules and outcomes.
CREATE OR REPLACE FUNCTION tasker.finalize_task(p_task_uuid uuid, p_processor text)
RETURNS TABLE (outcome text, next_retry_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    current_state text;
    summary       record;
BEGIN
    SELECT t.current_state INTO current_state
      FROM tasker.tasks t WHERE t.task_uuid = p_task_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % not found', p_task_uuid USING ERRCODE = 'no_data_found';
    END IF;
    SELECT * INTO summary FROM tasker.task_step_summary(p_task_uuid);
    RETURN QUERY SELECT * FROM tasker.finalize_locked_task(
        p_task_uuid, p_processor, current_state, summary.ready_steps, summary.in_process,
        summary.failed, summary.completed, summary.total, summary.retrying, summary.next_retry_at);
END
$$;

-- Processes one step result (p_outcome: success, retryable_failure or permanent_failure) for
-- attempt p_attempt, and deletes its message (p_msg_id on p_results_queue) when one is given.
-- A result that does not match the step (unknown step, another attempt, a state that does not
-- await this outcome) changes nothing but the message's deletion and comes back with
-- ignored_reason set. Otherwise the step moves to complete, waiting_for_retry (retry_at: when
-- its backoff ends) or error; then, with the task still locked, its newly ready steps are
-- enqueued (if the task is steps_in_process), or the task is finalised when nothing is ready
-- or running (task_outcome as in finalize_locked_task, with the summary already taken).
-- A result for a step of a cancelled task is recorded (the step moves to cancelled, the
-- outcome and any error in its history row) and moves nothing else. Each row names the task's
-- namespace and, when the result finished the task, its age: the orchestrator's metrics.
DROP FUNCTION IF EXISTS tasker.process_step_result(uuid, uuid, integer, text, jsonb, text, text, bigint);
CREATE OR REPLACE FUNCTION tasker.process_step_result(
    p_task_uuid     uuid,
    p_step_uuid     uuid,
    p_attempt       integer,
    p_outcome       text,
    p_error         jsonb,
    p_processor     text,
    p_results_queue text,
    p_msg_id        bigint
) RETURNS TABLE (
    ignored_reason text,
    step_state     text,
    enqueued       uuid[],
    task_outcome   text,
    next_retry_at  timestamptz,
    retry_at       timestamptz,
    namespace      text,
    task_age_seconds double precision
)
LANGUAGE plpgsql AS $$
DECLARE
    st         record;
    target     text;
    scheduled  timestamptz;
    summary    record;
    moved      uuid[] := '{}';
    finalized  record;
BEGIN
    IF p_msg_id IS NOT NULL THEN
        DELETE FROM tasker.queue_messages q WHERE q.queue_name = p_results_queue AND q.msg_id = p_msg_id;
    END IF;
    SELECT t.current_state AS task_state, ns.name || '_queue' AS queue, ns.name AS namespace,
           t.created_at AS task_created_at,
           s.current_state AS step_state, s.attempts, s.max_attempts, s.retryable,
           s.backoff_base_ms, s.backoff_max_ms
      INTO st
      FROM tasker.workflow_steps s
      JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
      JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid
      JOIN tasker.namespaces ns ON ns.namespace_uuid = nt.namespace_uuid
     WHERE s.workflow_step_uuid = p_step_uuid AND s.task_uuid = p_task_uuid
       FOR UPDATE OF t, s;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'no such step in that task'::text, NULL::text, NULL::uuid[], NULL::text,
                            NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::double precision;
        RETURN;
    END IF;
    IF p_attempt <> st.attempts THEN
        RETURN QUERY SELECT format('result of attempt %s but the step is on attempt %s', p_attempt, st.attempts),
                            NULL::text, NULL::uuid[], NULL::text, NULL::timestamptz, NULL::timestamptz,
                            st.namespace, NULL::double precision;
        RETURN;
    END IF;

    IF st.task_state = 'cancelled'
       AND st.step_state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration') THEN
        -- the task was cancelled while this step ran: its result (already on the row) goes
        -- into the step's history, and nothing moves on
        target := 'cancelled';
    ELSIF p_outcome = 'success' AND st.step_state = 'enqueued_for_orchestration' THEN
        target := 'complete';
    ELSIF p_outcome IN ('retryable_failure', 'permanent_failure')
          AND st.step_state = 'enqueued_as_error_for_orchestration' THEN
        IF p_outcome = 'retryable_failure' AND st.retryable AND st.attempts < st.max_attempts THEN
            -- backoff doubles per failed attempt up to its cap (RetryPolicy::backoff_ms)
            scheduled := now() + make_interval(secs =>
                least(greatest(st.backoff_base_ms, 0)::bigint << least(greatest(st.attempts, 1) - 1, 32),
                      greatest(st.backoff_max_ms, 0)::bigint) / 1000.0);
            target := 'waiting_for_retry';
        ELSE
            target := 'error';
        END IF;
    ELSE
        RETURN QUERY SELECT format('%s result but the step is %s', p_outcome, st.step_state),
                            NULL::text, NULL::uuid[], NULL::text, NULL::timestamptz, NULL::timestamptz,
                            st.namespace, NULL::double precision;
        RETURN;
    END IF;

    -- the step row is locked above and its state checked: the move needs no second lock or
    -- compare (each target here leaves the step out of process)
    WITH updated AS (
        UPDATE tasker.workflow_steps s
           SET current_state = target,
               updated_at = now(),
               in_process = false,
               processed = (target = 'complete'),
               processed_at = CASE WHEN target = 'complete' THEN now() ELSE s.processed_at END,
               next_retry_at = coalesce(scheduled, s.next_retry_at)
         WHERE s.workflow_step_uuid = p_step_uuid
        RETURNING s.workflow_step_uuid
    ), retired AS (
        UPDATE tasker.workflow_step_transitions t
           SET most_recent = false
         WHERE t.workflow_step_uuid = p_step_uuid AND t.most_recent AND EXISTS (SELECT 1 FROM updated)
        RETURNING t.sort_key
    )
    INSERT INTO tasker.workflow_step_transitions
        (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
    SELECT p_step_uuid, st.step_state, target,
           coalesce((SELECT max(r.sort_key) FROM retired r), 0) + 1, true, p_processor,
           CASE WHEN p_error IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('error', p_error) END
           || CASE WHEN target = 'cancelled'
                   THEN jsonb_build_object('outcome', p_outcome, 'task_cancelled', true)
                   ELSE '{}'::jsonb END
      FROM updated u;
    IF target = 'cancelled' THEN
        RETURN QUERY SELECT NULL::text, target, moved, 'not_finished'::text, NULL::timestamptz, NULL::timestamptz,
                            st.namespace, NULL::double precision;
        RETURN;
    END IF;

    SELECT * INTO summary FROM tasker.task_step_summary(p_task_uuid);
    IF summary.ready_steps IS NOT NULL THEN
        -- a task in any other state is not ours to enqueue for: the pick-up path owns it
        IF st.task_state = 'steps_in_process' THEN
            moved := tasker.enqueue_steps(p_task_uuid, summary.ready_steps, st.queue, p_processor);
        END IF;
        RETURN QUERY SELECT NULL::text, target, moved, 'not_finished'::text, NULL::timestamptz, scheduled,
                            st.namespace, NULL::double precision;
    ELSIF summary.in_process > 0 THEN
        RETURN QUERY SELECT NULL::text, target, moved, 'not_finished'::text, NULL::timestamptz, scheduled,
                            st.namespace, NULL::double precision;
    ELSE
        -- the task row is still locked from the start of this call and st.task_state is its
        -- state: nothing here moves the task before this point
        SELECT * INTO finalized FROM tasker.finalize_locked_task(
            p_task_uuid, p_processor, st.task_state, summary.ready_steps, summary.in_process,
            summary.failed, summary.completed, summary.total, summary.retrying,
            summary.next_retry_at);
        RETURN QUERY SELECT NULL::text, target, moved, finalized.outcome, finalized.next_retry_at, scheduled,
                            st.namespace,
                            CASE WHEN finalized.outcome IN ('completed', 'blocked')
                                 THEN extract(epoch FROM clock_timestamp() - st.task_created_at)::double precision
                            END;
    END IF;
END
$$;

-- The orchestrator's read and process in one call: takes up to p_limit visible result
-- messages off p_queue and processes each with process_step_result. Messages are taken by
-- deleting them, in one statement for the batch: this function processes and deletes in the
-- same transaction, so the row lock that SKIP LOCKED respects is all it needs, and a crash
-- rolls the deletion back with everything else. A message that is not a step result is
-- archived (error says so). A result whose processing fails is rolled back on its own and
-- goes back into the queue under its own id (so in its place in line), hidden for 0.1 s after
-- its first failed read, doubling with every further read up to p_vt_seconds; it is reported
-- in error, so one bad result does not hold up the rest. The columns of process_step_result
-- come back with each message.
DROP FUNCTION IF EXISTS tasker.process_next_results(text, double precision, integer, text);
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
    retry_at           timestamptz,
    namespace          text,
    task_age_seconds   double precision
)
LANGUAGE plpgsql
-- the queue read's plan, as queue_read has it
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
    m    record;
    r    record;
    uuid_pattern constant text := '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
BEGIN
    FOR m IN
        WITH visible AS (
            SELECT q.msg_id
              FROM tasker.queue_messages q
             WHERE q.queue_name = p_queue AND q.vt <= clock_timestamp()
             ORDER BY q.msg_id
             LIMIT p_limit
               FOR UPDATE SKIP LOCKED
        ), taken AS (
            DELETE FROM tasker.queue_messages q
             USING visible v
             WHERE q.msg_id = v.msg_id
            RETURNING q.msg_id, q.read_ct + 1 AS read_ct, q.enqueued_at, q.message
        )
        SELECT * FROM taken ORDER BY taken.msg_id
    LOOP
        msg_id := m.msg_id;
        task_uuid := NULL; workflow_step_uuid := NULL; error := NULL; ignored_reason := NULL;
        step_state := NULL; enqueued := NULL; task_outcome := NULL; next_retry_at := NULL;
        retry_at := NULL; namespace := NULL; task_age_seconds := NULL;
        IF coalesce(m.message ->> 'task_uuid', '') !~* uuid_pattern
           OR coalesce(m.message ->> 'workflow_step_uuid', '') !~* uuid_pattern
           OR coalesce(m.message ->> 'attempt', '') !~ '^[0-9]{1,9}$'
           OR coalesce(m.message ->> 'outcome', '') NOT IN ('success', 'retryable_failure', 'permanent_failure') THEN
            INSERT INTO tasker.queue_archive (msg_id, queue_name, read_ct, enqueued_at, message)
            VALUES (m.msg_id, p_queue, m.read_ct, m.enqueued_at, m.message);
            error := 'not a step result message; archived';
            RETURN NEXT;
            CONTINUE;
        END IF;
        task_uuid := (m.message ->> 'task_uuid')::uuid;
        workflow_step_uuid := (m.message ->> 'workflow_step_uuid')::uuid;
        BEGIN
            -- no message id: this call has already taken the message
            SELECT * INTO r FROM tasker.process_step_result(
                task_uuid, workflow_step_uuid, (m.message ->> 'attempt')::integer,
                m.message ->> 'outcome', m.message -> 'error', p_processor, NULL, NULL);
            ignored_reason := r.ignored_reason;
            step_state := r.step_state;
            enqueued := r.enqueued;
            task_outcome := r.task_outcome;
            next_retry_at := r.next_retry_at;
            retry_at := r.retry_at;
            namespace := r.namespace;
            task_age_seconds := r.task_age_seconds;
        EXCEPTION WHEN OTHERS THEN
            error := SQLERRM;
            INSERT INTO tasker.queue_messages (msg_id, queue_name, read_ct, enqueued_at, vt, message)
            OVERRIDING SYSTEM VALUE
            VALUES (m.msg_id, p_queue, m.read_ct, m.enqueued_at,
                    clock_timestamp()
                    + make_interval(secs => least(p_vt_seconds, 0.05 * 2 ^ least(m.read_ct, 20))),
                    m.message);
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
