-- The orchestration hot paths as database functions, so each is one round trip from Rust.

-- Compare-and-swap on a task's current state. Moves the task from p_from_state to p_to_state
-- and records the transition; returns false, changing nothing, when the task is not in
-- p_from_state (another writer got there first). Concurrent callers serialise on the task row:
-- the loser re-reads the row after the winner commits and sees the new state.
CREATE FUNCTION tasker.transition_task_state_atomic(
    p_task_uuid  uuid,
    p_from_state text,
    p_to_state   text,
    p_processor  text,
    p_metadata   jsonb DEFAULT '{}'::jsonb
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    previous_sort_key integer;
BEGIN
    UPDATE tasker.tasks
       SET current_state = p_to_state,
           updated_at = now(),
           completed_at = CASE WHEN p_to_state IN ('complete', 'error', 'cancelled', 'resolved_manually')
                               THEN now() ELSE completed_at END
     WHERE task_uuid = p_task_uuid AND current_state = p_from_state;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    UPDATE tasker.task_transitions
       SET most_recent = false
     WHERE task_uuid = p_task_uuid AND most_recent
    RETURNING sort_key INTO previous_sort_key;

    INSERT INTO tasker.task_transitions
        (task_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
    VALUES (p_task_uuid, p_from_state, p_to_state, coalesce(previous_sort_key, 0) + 1, true,
            p_processor, coalesce(p_metadata, '{}'::jsonb));
    RETURN true;
END
$$;

-- The same compare-and-swap for a workflow step; p_from_states lists the states the caller
-- accepts as a starting point (a retry, for instance, may start from pending or
-- waiting_for_retry).
CREATE FUNCTION tasker.transition_step_state_atomic(
    p_step_uuid   uuid,
    p_from_states text[],
    p_to_state    text,
    p_processor   text,
    p_metadata    jsonb DEFAULT '{}'::jsonb
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    previous_state    text;
    previous_sort_key integer;
BEGIN
    -- the FOR UPDATE read captures the state being left without a second lookup
    SELECT current_state INTO previous_state
      FROM tasker.workflow_steps
     WHERE workflow_step_uuid = p_step_uuid AND current_state = ANY (p_from_states)
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;

    UPDATE tasker.workflow_steps
       SET current_state = p_to_state,
           updated_at = now(),
           in_process = p_to_state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                                       'enqueued_as_error_for_orchestration'),
           processed = p_to_state IN ('complete', 'resolved_manually'),
           processed_at = CASE WHEN p_to_state IN ('complete', 'resolved_manually') THEN now()
                               ELSE processed_at END
     WHERE workflow_step_uuid = p_step_uuid;

    UPDATE tasker.workflow_step_transitions
       SET most_recent = false
     WHERE workflow_step_uuid = p_step_uuid AND most_recent
    RETURNING sort_key INTO previous_sort_key;

    INSERT INTO tasker.workflow_step_transitions
        (workflow_step_uuid, from_state, to_state, sort_key, most_recent, processor, metadata)
    VALUES (p_step_uuid, previous_state, p_to_state, coalesce(previous_sort_key, 0) + 1, true,
            p_processor, coalesce(p_metadata, '{}'::jsonb));
    RETURN previous_state;
END
$$;

-- Per-step readiness for one task (optionally a subset of its steps).
--   dependencies_satisfied: every parent is complete (or resolved manually)
--   retry_eligible: never attempted, or retryable with attempts left
--   next_retry_at: when the backoff after the last failure ends (null: no backoff pending)
--   ready_for_execution: pending or waiting_for_retry, dependencies satisfied, retry eligible
--   and the backoff has passed
CREATE FUNCTION tasker.get_step_readiness_status(
    p_task_uuid  uuid,
    p_step_uuids uuid[] DEFAULT NULL
) RETURNS TABLE (
    workflow_step_uuid     uuid,
    task_uuid              uuid,
    name                   text,
    current_state          text,
    dependencies_satisfied boolean,
    retry_eligible         boolean,
    ready_for_execution    boolean,
    total_parents          integer,
    completed_parents      integer,
    attempts               integer,
    max_attempts           integer,
    next_retry_at          timestamptz,
    last_attempted_at      timestamptz
)
LANGUAGE sql STABLE AS $$
    SELECT s.workflow_step_uuid,
           s.task_uuid,
           s.name,
           s.current_state,
           deps.total = deps.done,
           (s.attempts = 0 OR (s.retryable AND s.attempts < s.max_attempts)),
           s.current_state IN ('pending', 'waiting_for_retry')
               AND deps.total = deps.done
               AND (s.attempts = 0 OR (s.retryable AND s.attempts < s.max_attempts))
               AND (s.next_retry_at IS NULL OR s.next_retry_at <= now()),
           deps.total,
           deps.done,
           s.attempts,
           s.max_attempts,
           s.next_retry_at,
           s.last_attempted_at
      FROM tasker.workflow_steps s
     CROSS JOIN LATERAL (
           SELECT count(*)::integer AS total,
                  (count(*) FILTER (WHERE parent.current_state IN ('complete', 'resolved_manually')))::integer AS done
             FROM tasker.workflow_step_edges e
             JOIN tasker.workflow_steps parent ON parent.workflow_step_uuid = e.from_step_uuid
            WHERE e.to_step_uuid = s.workflow_step_uuid
           ) deps
     WHERE s.task_uuid = p_task_uuid
       AND (p_step_uuids IS NULL OR s.workflow_step_uuid = ANY (p_step_uuids))
     ORDER BY s.created_at, s.workflow_step_uuid
$$;

-- Step counts by state and what the orchestrator should do next with the task.
CREATE FUNCTION tasker.get_task_execution_context(p_task_uuid uuid)
RETURNS TABLE (
    task_uuid             uuid,
    task_state            text,
    total_steps           integer,
    pending_steps         integer,
    in_process_steps      integer,
    completed_steps       integer,
    failed_steps          integer,
    waiting_for_retry_steps integer,
    ready_steps           integer,
    execution_status      text,
    recommended_action    text,
    completion_percentage double precision
)
LANGUAGE sql STABLE AS $$
    WITH counts AS (
        SELECT count(*)::integer AS total,
               (count(*) FILTER (WHERE r.current_state = 'pending'))::integer AS pending,
               (count(*) FILTER (WHERE r.current_state IN ('enqueued', 'in_progress',
                    'enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')))::integer AS in_process,
               (count(*) FILTER (WHERE r.current_state IN ('complete', 'resolved_manually')))::integer AS completed,
               (count(*) FILTER (WHERE r.current_state = 'error'))::integer AS failed,
               (count(*) FILTER (WHERE r.current_state = 'waiting_for_retry'))::integer AS retrying,
               (count(*) FILTER (WHERE r.ready_for_execution))::integer AS ready
          FROM tasker.get_step_readiness_status(p_task_uuid) r
    )
    SELECT t.task_uuid,
           t.current_state,
           c.total, c.pending, c.in_process, c.completed, c.failed, c.retrying, c.ready,
           CASE WHEN c.ready > 0 THEN 'has_ready_steps'
                WHEN c.in_process > 0 THEN 'processing'
                WHEN c.failed > 0 THEN 'blocked_by_failures'
                WHEN c.completed = c.total THEN 'all_complete'
                ELSE 'waiting_for_dependencies' END,
           CASE WHEN c.ready > 0 THEN 'execute_ready_steps'
                WHEN c.in_process > 0 THEN 'wait_for_completion'
                WHEN c.failed > 0 THEN 'handle_failures'
                WHEN c.completed = c.total THEN 'finalize_task'
                ELSE 'wait_for_dependencies' END,
           CASE WHEN c.total = 0 THEN 100.0::double precision
                ELSE round(100.0 * c.completed / c.total, 2)::double precision END
      FROM tasker.tasks t CROSS JOIN counts c
     WHERE t.task_uuid = p_task_uuid
$$;

-- Every ancestor of a step with its distance (1 = direct parent) and its results; the worker
-- hands these to a step's handler.
CREATE FUNCTION tasker.get_step_transitive_dependencies(p_step_uuid uuid)
RETURNS TABLE (
    workflow_step_uuid uuid,
    name               text,
    current_state      text,
    results            jsonb,
    processed          boolean,
    distance           integer
)
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE ancestors (step_uuid, distance) AS (
        SELECT e.from_step_uuid, 1
          FROM tasker.workflow_step_edges e
         WHERE e.to_step_uuid = p_step_uuid
        UNION
        SELECT e.from_step_uuid, a.distance + 1
          FROM ancestors a
          JOIN tasker.workflow_step_edges e ON e.to_step_uuid = a.step_uuid
    )
    -- every ancestor is in the step's own task; saying so lets even a custom plan (whose
    -- row estimate for the recursive part is poor) look the steps up by index instead of
    -- hash-joining against the whole table
    SELECT s.workflow_step_uuid, s.name, s.current_state, s.results, s.processed, min(a.distance)::integer
      FROM ancestors a
      JOIN tasker.workflow_steps s ON s.workflow_step_uuid = a.step_uuid
     WHERE s.task_uuid = (SELECT own.task_uuid FROM tasker.workflow_steps own
                           WHERE own.workflow_step_uuid = p_step_uuid)
     GROUP BY s.workflow_step_uuid
     ORDER BY min(a.distance), s.name
$$;

-- Tasks that need orchestration attention: not being worked on (pending, waiting for
-- dependencies or for a retry) and with at least one step ready now. Order is priority, then
-- age. One pass: the partial index tasks_ready_candidates_idx yields candidates in that order,
-- each candidate's ready steps are counted once (the count is both the filter and the output),
-- and the scan stops as soon as p_limit tasks qualify. PL/pgSQL so the plan is made once per
-- session instead of on every call.
CREATE FUNCTION tasker.get_next_ready_tasks(p_limit integer DEFAULT 10)
RETURNS TABLE (
    task_uuid        uuid,
    task_state       text,
    priority         integer,
    namespace_name   text,
    task_name        text,
    task_version     text,
    ready_steps      integer,
    age_seconds      double precision,
    created_at       timestamptz
)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT c.task_uuid, c.current_state, c.priority, ns.name, nt.name, nt.version,
           c.ready, extract(epoch FROM now() - c.created_at)::double precision, c.created_at
      FROM (
            SELECT t.task_uuid, t.current_state, t.priority, t.created_at, t.named_task_uuid,
                   r.ready
              FROM tasker.tasks t
             CROSS JOIN LATERAL (
                   SELECT count(*)::integer AS ready
                     FROM tasker.workflow_steps s
                    WHERE s.task_uuid = t.task_uuid
                      AND s.current_state IN ('pending', 'waiting_for_retry')
                      AND (s.attempts = 0 OR (s.retryable AND s.attempts < s.max_attempts))
                      AND (s.next_retry_at IS NULL OR s.next_retry_at <= now())
                      AND NOT EXISTS (
                            SELECT 1
                              FROM tasker.workflow_step_edges e
                              JOIN tasker.workflow_steps parent
                                ON parent.workflow_step_uuid = e.from_step_uuid
                             WHERE e.to_step_uuid = s.workflow_step_uuid
                               AND parent.current_state NOT IN ('complete', 'resolved_manually'))
                   ) r
             WHERE t.current_state IN ('pending', 'waiting_for_dependencies', 'waiting_for_retry')
               AND r.ready > 0
             ORDER BY t.priority DESC, t.created_at, t.task_uuid
             LIMIT p_limit
           ) c
      JOIN tasker.named_tasks nt ON nt.named_task_uuid = c.named_task_uuid
      JOIN tasker.namespaces ns ON ns.namespace_uuid = nt.namespace_uuid
     ORDER BY c.priority DESC, c.created_at, c.task_uuid;
END
$$;
