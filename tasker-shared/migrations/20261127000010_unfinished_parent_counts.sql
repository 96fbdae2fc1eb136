-- Each step carries how many of its parents are not finished yet (finished: complete or
-- resolved_manually), so readiness is a column test instead of a probe of every parent.
--
-- Why: get_next_ready_tasks decided, for every candidate task, whether each open step had an
-- unfinished parent: an edge probe and a parent-row probe per open step. On the benchmark's
-- data set (5,000 tasks, about 20,000 steps) batch 100 looked at 151 candidates, 394 open
-- steps and 361 parents, 2,786 buffer reads and about 1 ms; batch 50 about 0.6 ms (pgbench
-- on the 2-core build machine). With the count kept on the step, the partial index below holds
-- exactly the open steps whose parents have all finished, and a candidate costs one probe of
-- it: batch 100 took 0.36 ms and batch 50 0.26 ms on the same data in the same window.
-- get_step_readiness_status (and with it task_step_summary, which the result path calls for
-- every step) stops reading the parents too.
--
-- The count is kept by triggers, so every writer of step states and edges keeps it right
-- without knowing about it (the transition functions, the enqueuer, the result processor, a
-- manual resolution, seeding scripts):
--   - a step whose state crosses the finished line moves each child's count by one, once per
--     crossing (the WHEN clause is tested per row; the function runs only on a crossing, about
--     once in a step's life);
--   - inserting or deleting edges recounts the children they point to, once per statement
--     (a task's creation inserts all its edges in one statement; deleting a task cascades to
--     its edges, and the recount then finds the deleted parents gone).

ALTER TABLE tasker.workflow_steps
    ADD COLUMN unfinished_parents integer NOT NULL DEFAULT 0;

UPDATE tasker.workflow_steps s
   SET unfinished_parents = (
           SELECT count(*)
             FROM tasker.workflow_step_edges e
             JOIN tasker.workflow_steps parent ON parent.workflow_step_uuid = e.from_step_uuid
            WHERE e.to_step_uuid = s.workflow_step_uuid
              AND parent.current_state NOT IN ('complete', 'resolved_manually'))
 WHERE EXISTS (SELECT 1 FROM tasker.workflow_step_edges e WHERE e.to_step_uuid = s.workflow_step_uuid);

-- The open steps that wait for nothing but, at most, their retry time: what a ready-step probe
-- looks for. It replaces the index of all open steps, whose only reader was that probe.
CREATE INDEX workflow_steps_unblocked_idx ON tasker.workflow_steps (task_uuid)
    WHERE current_state IN ('pending', 'waiting_for_retry') AND unfinished_parents = 0;
DROP INDEX tasker.workflow_steps_open_idx;

-- One UPDATE per child by primary key, not one UPDATE joining the edges: planned on a fresh
-- database (tables never analysed, see 20261127000009) the join hashed the whole steps
-- table; a primary-key probe is the cheapest plan at any size. A step has few children.
CREATE FUNCTION tasker.count_unfinished_parents_on_crossing() RETURNS trigger
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

CREATE TRIGGER workflow_steps_finished_crossing
    AFTER UPDATE OF current_state ON tasker.workflow_steps
    FOR EACH ROW
    WHEN ((OLD.current_state IN ('complete', 'resolved_manually'))
          IS DISTINCT FROM (NEW.current_state IN ('complete', 'resolved_manually')))
    EXECUTE FUNCTION tasker.count_unfinished_parents_on_crossing();

-- Both edge triggers name their transition table changed_edges, so one function serves both.
-- Each child is recounted by primary key, its parents' states read by primary key, for the
-- same reason as above.
CREATE FUNCTION tasker.recount_unfinished_parents() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    child uuid;
BEGIN
    FOR child IN SELECT DISTINCT c.to_step_uuid FROM changed_edges c LOOP
        UPDATE tasker.workflow_steps s
           SET unfinished_parents = (
                   SELECT count(*)
                     FROM tasker.workflow_step_edges e
                    WHERE e.to_step_uuid = child
                      AND (SELECT parent.current_state
                             FROM tasker.workflow_steps parent
                            WHERE parent.workflow_step_uuid = e.from_step_uuid)
                          NOT IN ('complete', 'resolved_manually'))
         WHERE s.workflow_step_uuid = child;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER workflow_step_edges_added
    AFTER INSERT ON tasker.workflow_step_edges
    REFERENCING NEW TABLE AS changed_edges
    FOR EACH STATEMENT
    EXECUTE FUNCTION tasker.recount_unfinished_parents();

CREATE TRIGGER workflow_step_edges_removed
    AFTER DELETE ON tasker.workflow_step_edges
    REFERENCING OLD TABLE AS changed_edges
    FOR EACH STATEMENT
    EXECUTE FUNCTION tasker.recount_unfinished_parents();

-- Readiness from the count: a step's parents are still counted (an index-only probe of the
-- edges' primary key) for total_parents, and the finished ones are the total less the count.
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

-- The same candidates in the same order; a candidate's ready steps are now one probe of
-- workflow_steps_unblocked_idx, with only the retry conditions read from the rows it finds.
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
