-- A worker's claim across all its queues in one call.
--
-- Why: a worker serving N namespaces claimed queue by queue, one round trip each, and then
-- once more per queue to see them empty: 2N statements per wake-up. Measured on the 2-core
-- build machine with the four benchmark namespaces: 13 claim calls per executed step, about
-- 2 ms of database time per step and the larger part of the E2E critical path. Now one call
-- reads the queues in the order given and fills the batch; it keeps reading a queue until a
-- read comes back short, so a result with fewer rows than p_limit means every queue was empty
-- when it was read and the caller can wait for a notification instead of asking again.

DROP FUNCTION tasker.claim_next_steps(text, double precision, integer, text);

CREATE FUNCTION tasker.claim_next_steps(
    p_queues     text[],
    p_vt_seconds double precision,
    p_limit      integer,
    p_worker     text
) RETURNS TABLE (
    queue_name         text,
    msg_id             bigint,
    read_ct            integer,
    workflow_step_uuid uuid,
    task_uuid          uuid,
    step_name          text,
    handler            text,
    configuration      jsonb,
    attempts           integer,
    timeout_ms         integer,
    task_context       jsonb,
    dependency_results jsonb
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    q      text;
    m      record;
    c      record;
    step   uuid;
    taken  integer := 0;
    wanted integer;
    seen   integer;
BEGIN
    FOREACH q IN ARRAY coalesce(p_queues, '{}') LOOP
        LOOP
            wanted := p_limit - taken;
            EXIT WHEN wanted <= 0;
            seen := 0;
            FOR m IN SELECT * FROM tasker.queue_read(q, p_vt_seconds, wanted) LOOP
                seen := seen + 1;
                IF coalesce(m.message ->> 'workflow_step_uuid', '') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
                    PERFORM tasker.queue_archive_message(q, m.msg_id);
                    CONTINUE;
                END IF;
                step := (m.message ->> 'workflow_step_uuid')::uuid;
                SELECT * INTO c FROM tasker.claim_step_for_execution(step, p_worker, m.read_ct > 1);
                IF c.task_uuid IS NULL THEN
                    DELETE FROM tasker.queue_messages qm WHERE qm.queue_name = q AND qm.msg_id = m.msg_id;
                    CONTINUE;
                END IF;
                taken := taken + 1;
                queue_name := q;
                msg_id := m.msg_id;
                read_ct := m.read_ct;
                workflow_step_uuid := step;
                task_uuid := c.task_uuid;
                step_name := c.step_name;
                handler := c.handler;
                configuration := c.configuration;
                attempts := c.attempts;
                timeout_ms := c.timeout_ms;
                task_context := c.task_context;
                dependency_results := c.dependency_results;
                RETURN NEXT;
            END LOOP;
            -- a short read: this queue has nothing more visible
            EXIT WHEN seen < wanted;
        END LOOP;
    END LOOP;
END
$$;

-- The claim and the submission, each one statement for the step row: the state change and
-- the claim's attempt count (or the submission's result) in the same UPDATE, where the
-- transition function followed by a second UPDATE wrote two versions of the row (neither can
-- be a HOT update: current_state is in a partial index's predicate, so every version adds an
-- entry to each of the table's indexes). The state's derived columns (in_process, processed)
-- are spelled out for the one target state each statement moves to; the history rows are
-- written exactly as transition_step_state_atomic writes them.

CREATE OR REPLACE FUNCTION tasker.claim_step_for_execution(
    p_step_uuid     uuid,
    p_worker        text,
    p_allow_reclaim boolean
) RETURNS TABLE (
    task_uuid          uuid,
    step_name          text,
    handler            text,
    configuration      jsonb,
    attempts           integer,
    timeout_ms         integer,
    task_context       jsonb,
    dependency_results jsonb
)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH old AS (
        SELECT s.workflow_step_uuid, s.current_state
          FROM tasker.workflow_steps s
         WHERE s.workflow_step_uuid = p_step_uuid
           AND (s.current_state = 'enqueued' OR (p_allow_reclaim AND s.current_state = 'in_progress'))
           FOR UPDATE
    ), updated AS (
        UPDATE tasker.workflow_steps s
           SET current_state = 'in_progress',
               in_process = true,
               processed = false,
               attempts = s.attempts + 1,
               last_attempted_at = now(),
               updated_at = now()
          FROM old
         WHERE s.workflow_step_uuid = old.workflow_step_uuid
        RETURNING s.task_uuid, s.name, s.handler, s.configuration, s.attempts, s.timeout_ms,
                  old.current_state AS previous
    ), retired AS (
        UPDATE tasker.workflow_step_transitions t
           SET most_recent = false
         WHERE t.workflow_step_uuid = p_step_uuid AND t.most_recent AND EXISTS (SELECT 1 FROM updated)
        RETURNING t.sort_key
    ), recorded AS (
        INSERT INTO tasker.workflow_step_transitions
            (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
        SELECT p_step_uuid, u.previous, 'in_progress',
               coalesce((SELECT max(r.sort_key) FROM retired r), 0) + 1, true,
               p_worker, jsonb_build_object('worker', p_worker)
          FROM updated u
    )
    SELECT u.task_uuid, u.name, u.handler, u.configuration, u.attempts, u.timeout_ms, t.context,
           coalesce((SELECT jsonb_object_agg(d.name, d.results)
                       FROM tasker.get_step_transitive_dependencies(p_step_uuid) d), '{}'::jsonb)
      FROM updated u
      JOIN tasker.tasks t ON t.task_uuid = u.task_uuid;
END
$$;

CREATE OR REPLACE FUNCTION tasker.submit_step_result(
    p_step_uuid      uuid,
    p_worker         text,
    p_success        boolean,
    p_results        jsonb,
    p_error          jsonb,
    p_result_message jsonb,
    p_step_queue     text,
    p_msg_id         bigint
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    moved boolean;
BEGIN
    WITH old AS (
        SELECT s.workflow_step_uuid, s.current_state
          FROM tasker.workflow_steps s
         WHERE s.workflow_step_uuid = p_step_uuid AND s.current_state = 'in_progress'
           FOR UPDATE
    ), updated AS (
        UPDATE tasker.workflow_steps s
           SET current_state = CASE WHEN p_success THEN 'enqueued_for_orchestration'
                                    ELSE 'enqueued_as_error_for_orchestration' END,
               in_process = true,
               processed = false,
               results = CASE WHEN p_success THEN p_results ELSE s.results END,
               last_error = CASE WHEN p_success THEN NULL ELSE p_error END,
               updated_at = now()
          FROM old
         WHERE s.workflow_step_uuid = old.workflow_step_uuid
        RETURNING s.current_state AS target, old.current_state AS previous
    ), retired AS (
        UPDATE tasker.workflow_step_transitions t
           SET most_recent = false
         WHERE t.workflow_step_uuid = p_step_uuid AND t.most_recent AND EXISTS (SELECT 1 FROM updated)
        RETURNING t.sort_key
    )
    INSERT INTO tasker.workflow_step_transitions
        (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
    SELECT p_step_uuid, u.previous, u.target,
           coalesce((SELECT max(r.sort_key) FROM retired r), 0) + 1, true,
           p_worker, '{}'::jsonb
      FROM updated u
    RETURNING true INTO moved;
    IF moved IS NULL THEN
        RETURN false;
    END IF;
    PERFORM tasker.queue_send('orchestration_step_results', p_result_message, 0);
    DELETE FROM tasker.queue_messages WHERE queue_name = p_step_queue AND msg_id = p_msg_id;
    RETURN true;
END
$$;

-- Enqueueing in two statements: one locks the steps still pending or waiting for a retry (in
-- a fixed order, so concurrent callers cannot deadlock), moves them to enqueued, records their
-- transitions and builds their messages; queue_send_batch sends the messages with one
-- notification. It was a call to transition_steps_atomic, a query building the messages and
-- the send: three statements and two nested function calls on every step's path. Only steps
-- of p_task_uuid are touched.
CREATE OR REPLACE FUNCTION tasker.enqueue_steps(
    p_task_uuid  uuid,
    p_step_uuids uuid[],
    p_queue      text,
    p_processor  text
) RETURNS uuid[]
LANGUAGE plpgsql AS $$
DECLARE
    moved    uuid[];
    messages jsonb[];
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
    )
    -- the attempt the message asks for; the claim increments attempts
    SELECT array_agg(u.workflow_step_uuid),
           array_agg(jsonb_build_object('task_uuid', u.task_uuid,
                                        'workflow_step_uuid', u.workflow_step_uuid,
                                        'attempt', u.attempts + 1)
                     ORDER BY u.created_at, u.workflow_step_uuid)
      INTO moved, messages
      FROM updated u;
    IF moved IS NULL THEN
        RETURN '{}';
    END IF;
    PERFORM tasker.queue_send_batch(p_queue, messages);
    RETURN moved;
END
$$;

-- Finalising from a summary the caller already has, with the task row already locked by it:
-- process_step_result summarises the task's steps to decide whether to enqueue or finalise,
-- and finalize_task used to lock the row and summarise again. Same rules and outcomes as
-- finalize_task (which now calls this).
CREATE FUNCTION tasker.finalize_locked_task(
    p_task_uuid     uuid,
    p_processor     text,
    p_current_state text,
    -- the columns of task_step_summary (a PL/pgSQL function cannot take a record)
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
        IF p_current_state <> 'evaluating_results' THEN
            -- the task state machine allows evaluating_results only from these
            IF p_current_state NOT IN ('steps_in_process', 'waiting_for_dependencies',
                                       'waiting_for_retry', 'blocked_by_failures') THEN
                RAISE EXCEPTION 'illegal task transition: % -> evaluating_results (task %)',
                    p_current_state, p_task_uuid USING ERRCODE = 'check_violation';
            END IF;
            PERFORM tasker.transition_task_state_atomic(p_task_uuid, p_current_state,
                                                        'evaluating_results', p_processor);
        END IF;
        PERFORM tasker.transition_task_state_atomic(p_task_uuid, 'evaluating_results', target,
                                                    p_processor);
        IF target IN ('complete', 'blocked_by_failures') THEN
            PERFORM pg_notify('tasker_task_finished', p_task_uuid::text);
        END IF;
    END IF;
    RETURN QUERY SELECT verdict,
                        CASE WHEN verdict = 'waiting_for_retry' THEN p_next_retry_at END;
END
$$;

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

-- process_step_result again, finalising with the summary it already has
-- (finalize_locked_task) instead of locking and summarising the task a second time.
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
    retry_at       timestamptz
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
    SELECT t.current_state AS task_state, ns.name || '_queue' AS queue,
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
                            NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    IF p_attempt <> st.attempts THEN
        RETURN QUERY SELECT format('result of attempt %s but the step is on attempt %s', p_attempt, st.attempts),
                            NULL::text, NULL::uuid[], NULL::text, NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;

    IF p_outcome = 'success' AND st.step_state = 'enqueued_for_orchestration' THEN
        target := 'complete';
    ELSIF p_outcome IN ('retryable_failure', 'permanent_failure')
          AND st.step_state = 'enqueued_as_error_for_orchestration' THEN
        IF p_outcome = 'retryable_failure' AND st.retryable AND st.attempts < st.max_attempts THEN
            -- backoff doubles per failed attempt up to its cap (RetryPolicy::backoff_ms)
            UPDATE tasker.workflow_steps s
               SET next_retry_at = now() + make_interval(secs =>
                       least(greatest(st.backoff_base_ms, 0)::bigint << least(greatest(st.attempts, 1) - 1, 32),
                             greatest(st.backoff_max_ms, 0)::bigint) / 1000.0)
             WHERE s.workflow_step_uuid = p_step_uuid
            RETURNING s.next_retry_at INTO scheduled;
            target := 'waiting_for_retry';
        ELSE
            target := 'error';
        END IF;
    ELSE
        RETURN QUERY SELECT format('%s result but the step is %s', p_outcome, st.step_state),
                            NULL::text, NULL::uuid[], NULL::text, NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;

    PERFORM tasker.transition_step_state_atomic(
        p_step_uuid, ARRAY[st.step_state], target, p_processor,
        CASE WHEN p_error IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('error', p_error) END);

    SELECT * INTO summary FROM tasker.task_step_summary(p_task_uuid);
    IF summary.ready_steps IS NOT NULL THEN
        -- a task in any other state is not ours to enqueue for: the pick-up path owns it
        IF st.task_state = 'steps_in_process' THEN
            moved := tasker.enqueue_steps(p_task_uuid, summary.ready_steps, st.queue, p_processor);
        END IF;
        RETURN QUERY SELECT NULL::text, target, moved, 'not_finished'::text, NULL::timestamptz, scheduled;
    ELSIF summary.in_process > 0 THEN
        RETURN QUERY SELECT NULL::text, target, moved, 'not_finished'::text, NULL::timestamptz, scheduled;
    ELSE
        -- the task row is still locked from the start of this call and st.task_state is its
        -- state: nothing here moves the task before this point
        SELECT * INTO finalized FROM tasker.finalize_locked_task(
            p_task_uuid, p_processor, st.task_state, summary.ready_steps, summary.in_process,
            summary.failed, summary.completed, summary.total, summary.retrying,
            summary.next_retry_at);
        RETURN QUERY SELECT NULL::text, target, moved, finalized.outcome, finalized.next_retry_at, scheduled;
    END IF;
END
$$;
