-- Readiness: which steps can run, what a task's steps add up to, which tasks need the
-- orchestrator. A step's unfinished_parents count (kept by the triggers below, so every writer
-- of step states and edges keeps it right without knowing about it) makes readiness a column
-- test instead of a probe of every parent.

-- Trigger: a step whose state crosses the finished line (into or out of complete or
-- resolved_manually) moves each child's unfinished_parents by one. One UPDATE per child by
-- primary key: a step has few children, and a key probe is the cheapest plan at any size.
CREATE OR REPLACE FUNCTION tasker.count_unfinished_parents_on_crossing() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    child uuid;
    delta integer := CASE WHEN NEW.current_state IN ('complete', 'resolved_manually') THEN -1 ELSE 1 END;
BEGIN
    FOR child IN
        SELECT e.to_step_uuid FROM tasker.workflow_step_edges e
         WHERE e.from_step_uuid = NEW.workflow_step_uuid
    LOOP
        UPDATE tasker.workflow_steps s
           SET unfinished_parents = s.unfinished_parents + delta
         WHERE s.workflow_step_uuid = child;
    END LOOP;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS workflow_steps_finished_crossing ON tasker.workflow_steps;
CREATE TRIGGER workflow_steps_finished_crossing
    AFTER UPDATE OF current_state ON tasker.workflow_steps
    FOR EACH ROW
    WHEN ((OLD.current_state IN ('complete', 'resolved_manually'))
          IS DISTINCT FROM (NEW.current_state IN ('complete', 'resolved_manually')))
    EXECUTE FUNCTION tasker.count_unfinished_parents_on_crossing();

-- Trigger: inserting or deleting edges recounts the children they point to, once per
-- statement (a task's creation inserts all its edges in one statement; deleting a task
-- cascades to its edges). Both edge triggers name their transition table changed_edges, so
-- one function serves both. A child whose count is already right is left alone: task
-- creation writes each new step's count with the step, so the recount after its edges'
-- insert reads and writes nothing.
CREATE OR REPLACE FUNCTION tasker.recount_unfinished_parents() RETURNS trigger
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
BEGIN
    UPDATE tasker.workflow_steps s
       SET unfinished_parents = recount.unfinished
      FROM (SELECT c.child,
                   (SELECT count(*)::integer
                      FROM tasker.workflow_step_edges e
                     WHERE e.to_step_uuid = c.child
                       AND (SELECT parent.current_state
                              FROM tasker.workflow_steps parent
                             WHERE parent.workflow_step_uuid = e.from_step_uuid)
                           NOT IN ('complete', 'resolved_manually')) AS unfinished
              FROM (SELECT DISTINCT ce.to_step_uuid AS child FROM changed_edges ce) c
            -- a fence: pulled up, the count was evaluated twice, in the filter and the SET
            OFFSET 0) recount
     WHERE s.workflow_step_uuid = recount.child
       AND s.unfinished_parents <> recount.unfinished;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS workflow_step_edges_added ON tasker.workflow_step_edges;
CREATE TRIGGER workflow_step_edges_added
    AFTER INSERT ON tasker.workflow_step_edges
    REFERENCING NEW TABLE AS changed_edges
    FOR EACH STATEMENT
    EXECUTE FUNCTION tasker.recount_unfinished_parents();

DROP TRIGGER IF EXISTS workflow_step_edges_removed ON tasker.workflow_step_edges;
CREATE TRIGGER workflow_step_edges_removed
    AFTER DELETE ON tasker.workflow_step_edges
    REFERENCING OLD TABLE AS changed_edges
    FOR EACH STATEMENT
    EXECUTE FUNCTION tasker.recount_unfinished_parents();

-- Per-step readiness for one task (optionally a subset of its steps).
--   dependencies_satisfied: every parent is complete (or resolved manually)
--   retry_eligible: never attempted, or retryable with attempts left
--   next_retry_at: when the backoff after the last failure ends (null: no backoff pending)
--   ready_for_execution: pending or waiting_for_retry, dependencies satisfied, retry eligible
--   and the backoff has passed
-- Readiness comes from the step's unfinished_parents count; the parents are still counted (an
-- index-only probe of the edges' primary key) for total_parents.
CREATE OR REPLACE FUNCTION tasker.get_step_readiness_status(
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
           s.unfinished_parents = 0,
           (s.attempts = 0 OR (s.retryable AND s.attempts < s.max_attempts)),
           s.current_state IN ('pending', 'waiting_for_retry')
               AND s.unfinished_parents = 0
               AND (s.attempts = 0 OR (s.retryable AND s.attempts < s.max_attempts))
               AND (s.next_retry_at IS NULL OR s.next_retry_at <= now()),
           deps.total,
           deps.total - s.unfinished_parents,
           s.attempts,
           s.max_attempts,
           s.next_retry_at,
           s.last_attempted_at
      FROM tasker.workflow_steps s
     CROSS JOIN LATERAL (
           SELECT count(*)::integer AS total
             FROM tasker.workflow_step_edges e
            WHERE e.to_step_uuid = s.workflow_step_uuid
           ) deps
     WHERE s.task_uuid = p_task_uuid
       AND (p_step_uuids IS NULL OR s.workflow_step_uuid = ANY (p_step_uuids))
     ORDER BY s.created_at, s.workflow_step_uuid
$$;

-- Every ancestor of a step with its distance (1 = direct parent) and its results; the worker
-- hands these to a step's handler. Every ancestor is in the step's own task, and the query
-- says so, so the steps are looked up by index rather than hash-joined against the table.
CREATE OR REPLACE FUNCTION tasker.get_step_transitive_dependencies(p_step_uuid uuid)
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
        SELECT parent.from_step_uuid, a.distance + 1
          FROM ancestors a
         CROSS JOIN LATERAL (
               SELECT e.from_step_uuid
                 FROM tasker.workflow_step_edges e
                WHERE e.to_step_uuid = a.step_uuid
               OFFSET 0
               ) parent
    )
    -- every ancestor is in the step's own task; saying so lets the steps be looked up by
    -- index instead of hash-joined against the whole table
    SELECT s.workflow_step_uuid, s.name, s.current_state, s.results, s.processed, min(a.distance)::integer
      FROM ancestors a
      JOIN tasker.workflow_steps s ON s.workflow_step_uuid = a.step_uuid
     WHERE s.task_uuid = (SELECT own.task_uuid FROM tasker.workflow_steps own
                           WHERE own.workflow_step_uuid = p_step_uuid)
     GROUP BY s.workflow_step_uuid
     ORDER BY min(a.distance), s.name
$$;

-- What a task's steps add up to, in one pass over its readiness.
CREATE OR REPLACE FUNCTION tasker.task_step_summary(p_task_uuid uuid)
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

-- Step counts by state and what the orchestrator should do next with the task.
CREATE OR REPLACE FUNCTION tasker.get_task_execution_context(p_task_uuid uuid)
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

-- Tasks that need orchestration attention: not being worked on (pending, waiting for
-- dependencies or for a retry) and with at least one step ready now. Order is priority, then
-- age. One pass: the partial index tasks_ready_candidates_idx yields candidates in that order,
-- a candidate's ready steps are one probe of workflow_steps_unblocked_idx (the count is both
-- the filter and the output), and the scan stops as soon as p_limit tasks qualify. PL/pgSQL
-- so the plan is made once per session instead of on every call.
CREATE OR REPLACE FUNCTION tasker.get_next_ready_tasks(p_limit integer DEFAULT 10)
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
                      AND s.unfinished_parents = 0
                      AND (s.attempts = 0 OR (s.retryable AND s.attempts < s.max_attempts))
                      AND (s.next_retry_at IS NULL OR s.next_retry_at <= now())
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
