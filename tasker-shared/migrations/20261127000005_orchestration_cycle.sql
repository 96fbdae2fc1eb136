-- The orchestration cycle as single calls: enqueueing a task's ready steps, picking a task up,
-- finalising it, and processing one step result (lock, transition, retry scheduling,
-- readiness, enqueueing the dependents or finalising the task, acknowledging the message).
--
-- Why in the database: processing a result from Rust took nine round trips in one
-- transaction (measured on the 2-core build machine: about 2 ms of a 3.75 ms step on the E2E
-- critical path, and most of the server's CPU per step in statement start-up). One call keeps
-- every rule in one place and the task row locked for the shortest time. The Rust lifecycle
-- modules are thin typed wrappers around these functions.

-- The transition functions again, each now one statement (data-modifying CTEs) instead of
-- three or four: the compare-and-swap on the row, retiring the previous most_recent
-- transition and inserting the new one. Same signatures and semantics. Every step passes
-- through four transitions and every task through about six, so this is most of the
-- statements on the step path (each costing 40 to 100 us of executor start-up on the build
-- machine).

CREATE OR REPLACE FUNCTION tasker.transition_task_state_atomic(
    p_task_uuid  uuid,
    p_from_state text,
    p_to_state   text,
    p_processor  text,
    p_metadata   jsonb DEFAULT '{}'::jsonb
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    moved boolean;
BEGIN
    WITH updated AS (
        UPDATE tasker.tasks t
           SET current_state = p_to_state,
               updated_at = now(),
               completed_at = CASE WHEN p_to_state IN ('complete', 'error', 'cancelled', 'resolved_manually')
                                   THEN now() ELSE t.completed_at END
         WHERE t.task_uuid = p_task_uuid AND t.current_state = p_from_state
        RETURNING t.task_uuid
    ), retired AS (
        UPDATE tasker.task_transitions tt
           SET most_recent = false
         WHERE tt.task_uuid = p_task_uuid AND tt.most_recent AND EXISTS (SELECT 1 FROM updated)
        RETURNING tt.sort_key
    )
    INSERT INTO tasker.task_transitions
        (task_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
    SELECT u.task_uuid, p_from_state, p_to_state,
           coalesce((SELECT max(r.sort_key) FROM retired r), 0) + 1, true,
           p_processor, coalesce(p_metadata, '{}'::jsonb)
      FROM updated u
    RETURNING true INTO moved;
    RETURN coalesce(moved, false);
END
$$;

CREATE OR REPLACE FUNCTION tasker.transition_step_state_atomic(
    p_step_uuid   uuid,
    p_from_states text[],
    p_to_state    text,
    p_processor   text,
    p_metadata    jsonb DEFAULT '{}'::jsonb
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    previous_state text;
BEGIN
    -- the FOR UPDATE read captures the state being left; a concurrent writer's change is
    -- re-checked against p_from_states after its commit (so exactly one CAS wins)
    WITH old AS (
        SELECT s.workflow_step_uuid, s.current_state
          FROM tasker.workflow_steps s
         WHERE s.workflow_step_uuid = p_step_uuid AND s.current_state = ANY (p_from_states)
           FOR UPDATE
    ), updated AS (
        UPDATE tasker.workflow_steps s
           SET current_state = p_to_state,
               updated_at = now(),
               in_process = p_to_state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                                           'enqueued_as_error_for_orchestration'),
               processed = p_to_state IN ('complete', 'resolved_manually'),
               processed_at = CASE WHEN p_to_state IN ('complete', 'resolved_manually') THEN now()
                                   ELSE s.processed_at END
          FROM old
         WHERE s.workflow_step_uuid = old.workflow_step_uuid
        RETURNING old.current_state AS previous
    ), retired AS (
        UPDATE tasker.workflow_step_transitions t
           SET most_recent = false
         WHERE t.workflow_step_uuid = p_step_uuid AND t.most_recent AND EXISTS (SELECT 1 FROM updated)
        RETURNING t.sort_key
    )
    INSERT INTO tasker.workflow_step_transitions
        (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
    SELECT p_step_uuid, u.previous, p_to_state,
           coalesce((SELECT max(r.sort_key) FROM retired r), 0) + 1, true,
           p_processor, coalesce(p_metadata, '{}'::jsonb)
      FROM updated u
    RETURNING from_state INTO previous_state;
    RETURN previous_state;
END
$$;

CREATE OR REPLACE FUNCTION tasker.transition_steps_atomic(
    p_step_uuids  uuid[],
    p_from_states text[],
    p_to_state    text,
    p_processor   text,
    p_metadata    jsonb DEFAULT '{}'::jsonb
) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
BEGIN
    -- locks in a fixed order so two batch callers cannot deadlock on each other
    RETURN QUERY
    WITH locked AS (
        SELECT s.workflow_step_uuid, s.current_state
          FROM tasker.workflow_steps s
         WHERE s.workflow_step_uuid = ANY (p_step_uuids)
           AND s.current_state = ANY (p_from_states)
         ORDER BY s.workflow_step_uuid
           FOR UPDATE
    ), updated AS (
        UPDATE tasker.workflow_steps s
           SET current_state = p_to_state,
               updated_at = now(),
               in_process = p_to_state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                                           'enqueued_as_error_for_orchestration'),
               processed = p_to_state IN ('complete', 'resolved_manually'),
               processed_at = CASE WHEN p_to_state IN ('complete', 'resolved_manually') THEN now()
                                   ELSE s.processed_at END
          FROM locked
         WHERE s.workflow_step_uuid = locked.workflow_step_uuid
        RETURNING s.workflow_step_uuid, locked.current_state AS previous
    ), retired AS (
        UPDATE tasker.workflow_step_transitions t
           SET most_recent = false
          FROM updated u
         WHERE t.workflow_step_uuid = u.workflow_step_uuid AND t.most_recent
        RETURNING t.workflow_step_uuid, t.sort_key
    ), inserted AS (
        INSERT INTO tasker.workflow_step_transitions
            (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
        SELECT u.workflow_step_uuid, u.previous, p_to_state, coalesce(r.sort_key, 0) + 1, true,
               p_processor, coalesce(p_metadata, '{}'::jsonb)
          FROM updated u
          LEFT JOIN retired r ON r.workflow_step_uuid = u.workflow_step_uuid
        RETURNING workflow_step_transitions.workflow_step_uuid
    )
    SELECT i.workflow_step_uuid FROM inserted i;
END
$$;

-- Sends one step message per listed step that is still pending or waiting for a retry, after
-- moving it to enqueued. Returns the steps moved; the rest were taken by a concurrent writer.
CREATE FUNCTION tasker.enqueue_steps(
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
    SELECT array_agg(m) INTO moved
      FROM tasker.transition_steps_atomic(p_step_uuids, ARRAY['pending', 'waiting_for_retry'],
                                          'enqueued', p_processor) AS m;
    IF moved IS NULL THEN
        RETURN '{}';
    END IF;
    -- the attempt the message asks for; the claim increments attempts
    SELECT array_agg(jsonb_build_object('task_uuid', s.task_uuid,
                                        'workflow_step_uuid', s.workflow_step_uuid,
                                        'attempt', s.attempts + 1)
                     ORDER BY s.created_at, s.workflow_step_uuid)
      INTO messages
      FROM tasker.workflow_steps s
     WHERE s.workflow_step_uuid = ANY (moved) AND s.task_uuid = p_task_uuid;
    PERFORM tasker.queue_send_batch(p_queue, messages);
    RETURN moved;
END
$$;

-- What a task's steps add up to, in one pass over its readiness.
CREATE FUNCTION tasker.task_step_summary(p_task_uuid uuid)
RETURNS TABLE (
    ready_steps      uuid[],
    in_process       integer,
    failed           integer,
    completed        integer,
    total            integer,
    retrying         integer,
    next_retry_at    timestamptz
)
LANGUAGE sql STABLE AS $$
    SELECT array_agg(r.workflow_step_uuid) FILTER (WHERE r.ready_for_execution),
           (count(*) FILTER (WHERE r.current_state IN ('enqueued', 'in_progress',
                'enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')))::integer,
           (count(*) FILTER (WHERE r.current_state = 'error'))::integer,
           (count(*) FILTER (WHERE r.current_state IN ('complete', 'resolved_manually')))::integer,
           count(*)::integer,
           (count(*) FILTER (WHERE r.current_state = 'waiting_for_retry'))::integer,
           min(r.next_retry_at) FILTER (WHERE r.current_state = 'waiting_for_retry' AND r.retry_eligible)
      FROM tasker.get_step_readiness_status(p_task_uuid) r
$$;

-- Finalises a task from what its steps add up to: complete, blocked_by_failures,
-- waiting_for_retry (with when the earliest backoff ends) or waiting_for_dependencies, always
-- by way of evaluating_results. A finished task (complete, error, blocked) is announced on
-- tasker_task_finished in the same transaction. Outcomes: not_finished (work is ready or
-- running, or the task is terminal), completed, blocked, waiting_for_retry,
-- waiting_for_dependencies. Locks the task st.
CREATE FUNCTION tasker.finalize_task(p_task_uuid uuid, p_processor text)
RETURNS TABLE (outcome text, next_retry_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    current_state text;
    summary       record;
    target        text;
    verdict       text;
BEGIN
    SELECT t.current_state INTO current_state
      FROM tasker.tasks t WHERE t.task_uuid = p_task_uuid FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % not found', p_task_uuid USING ERRCODE = 'no_data_found';
    END IF;
    IF current_state IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN
        RETURN QUERY SELECT 'not_finished'::text, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT * INTO summary FROM tasker.task_step_summary(p_task_uuid);
    IF summary.ready_steps IS NOT NULL OR summary.in_process > 0 THEN
        RETURN QUERY SELECT 'not_finished'::text, NULL::timestamptz;
        RETURN;
    ELSIF summary.failed > 0 THEN
        target := 'blocked_by_failures'; verdict := 'blocked';
    ELSIF summary.completed = summary.total THEN
        target := 'complete'; verdict := 'completed';
    ELSIF summary.retrying > 0 THEN
        target := 'waiting_for_retry'; verdict := 'waiting_for_retry';
    ELSE
        target := 'waiting_for_dependencies'; verdict := 'waiting_for_dependencies';
    END IF;
    IF current_state <> target THEN
        IF current_state <> 'evaluating_results' THEN
            -- the task state machine allows evaluating_results only from these
            IF current_state NOT IN ('steps_in_process', 'waiting_for_dependencies',
                                     'waiting_for_retry', 'blocked_by_failures') THEN
                RAISE EXCEPTION 'illegal task transition: % -> evaluating_results (task %)',
                    current_state, p_task_uuid USING ERRCODE = 'check_violation';
            END IF;
            PERFORM tasker.transition_task_state_atomic(p_task_uuid, current_state,
                                                        'evaluating_results', p_processor);
        END IF;
        PERFORM tasker.transition_task_state_atomic(p_task_uuid, 'evaluating_results', target,
                                                    p_processor);
        IF target IN ('complete', 'blocked_by_failures') THEN
            PERFORM pg_notify('tasker_task_finished', p_task_uuid::text);
        END IF;
    END IF;
    RETURN QUERY SELECT verdict,
                        CASE WHEN verdict = 'waiting_for_retry' THEN summary.next_retry_at END;
END
$$;

-- Picks up a task waiting to be worked on (pending, waiting_for_dependencies or
-- waiting_for_retry): enqueuing_steps, its ready steps enqueued, then steps_in_process (or
-- waiting_for_dependencies when nothing could be enqueued). NULL when the task is in any other
-- state: another orchestrator has it, or it moved on.
CREATE FUNCTION tasker.pick_up_task(p_task_uuid uuid, p_processor text)
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
    PERFORM tasker.transition_task_state_atomic(p_task_uuid, current_state, 'enqueuing_steps', p_processor);
    SELECT array_agg(r.workflow_step_uuid) INTO ready
      FROM tasker.get_step_readiness_status(p_task_uuid) r
     WHERE r.ready_for_execution;
    enqueued := tasker.enqueue_steps(p_task_uuid, ready, queue, p_processor);
    PERFORM tasker.transition_task_state_atomic(
        p_task_uuid, 'enqueuing_steps',
        CASE WHEN cardinality(enqueued) > 0 THEN 'steps_in_process' ELSE 'waiting_for_dependencies' END,
        p_processor);
    RETURN enqueued;
END
$$;

-- Processes one step result (p_outcome: success, retryable_failure or permanent_failure) for
-- attempt p_attempt, and deletes its message (p_msg_id on p_results_queue) when one is given.
-- A result that does not match the step (unknown step, another attempt, a state that does not
-- await this outcome) changes nothing but the message's deletion and comes back with
-- ignored_reason set. Otherwise the step moves to complete, waiting_for_retry (retry_at: when
-- its backoff ends) or error; then, with the task still locked, its newly ready steps are
-- enqueued (if the task is steps_in_process), or the task is finalised when nothing is ready
-- or running (task_outcome as in finalize_task).
CREATE FUNCTION tasker.process_step_result(
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
        SELECT * INTO finalized FROM tasker.finalize_task(p_task_uuid, p_processor);
        RETURN QUERY SELECT NULL::text, target, moved, finalized.outcome, finalized.next_retry_at, scheduled;
    END IF;
END
$$;

-- The queue and the step tables churn (every message is inserted, updated when read and
-- deleted; every step is updated five times): vacuum them after a fixed number of dead rows
-- rather than a fraction of the table, so a small busy table does not bloat to many times its
-- live size between autovacuum runs (measured: 8,558 dead messages beside 12 live ones under
-- the throughput benchmark), and keep their statistics current for the planner.
ALTER TABLE tasker.queue_messages SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500,
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 500,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE tasker.workflow_steps SET (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.05, autovacuum_analyze_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE tasker.tasks SET (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE tasker.workflow_step_transitions SET (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE tasker.task_transitions SET (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0);

-- A worker's read and claim in one call: takes up to p_limit visible messages from p_queue
-- (hiding them for p_vt_seconds) and claims each one's step as claim_step_for_execution does,
-- returning the claimed steps with their messages. A message whose step is not claimable (a
-- duplicate, or a step already finished) is deleted; one that names no step is archived.
CREATE FUNCTION tasker.claim_next_steps(
    p_queue      text,
    p_vt_seconds double precision,
    p_limit      integer,
    p_worker     text
) RETURNS TABLE (
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
    m     record;
    c     record;
    step  uuid;
BEGIN
    FOR m IN SELECT * FROM tasker.queue_read(p_queue, p_vt_seconds, p_limit) LOOP
        IF coalesce(m.message ->> 'workflow_step_uuid', '') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            PERFORM tasker.queue_archive_message(p_queue, m.msg_id);
            CONTINUE;
        END IF;
        step := (m.message ->> 'workflow_step_uuid')::uuid;
        SELECT * INTO c FROM tasker.claim_step_for_execution(step, p_worker, m.read_ct > 1);
        IF c.task_uuid IS NULL THEN
            DELETE FROM tasker.queue_messages q WHERE q.queue_name = p_queue AND q.msg_id = m.msg_id;
            CONTINUE;
        END IF;
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
END
$$;

-- The orchestrator's read and process in one call: takes up to p_limit visible result
-- messages (hidden for p_vt_seconds) and processes each with process_step_result, which also
-- deletes it. A message that is not a step result is archived (error says so). A result whose
-- processing fails is rolled back on its own (its message stays hidden and comes back after
-- the visibility timeout) and reported in error, so one bad result does not hold up the rest.
CREATE FUNCTION tasker.process_next_results(
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
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
