-- Plans that stay right whatever the planner believes about table sizes: readiness and
-- ancestry by key lookups, the queue read pinned to its ordered index walk.
--
-- Why: the engine's connections keep each statement's generic plan for their whole life
-- (plan_cache_mode = force_generic_plan, see tasker_shared::database::connect_options), so a
-- plan made while the tables were small stays in use after they have grown, until an ANALYZE
-- of the table invalidates it. On a fresh database (a new installation, every benchmark run)
-- the planner assumes ten pages for a table never analysed, and for two joins it then
-- preferred hashing the whole table to a few index probes:
--   - get_step_readiness_status joined each step's parents with a sequential scan of
--     workflow_steps (once per step of the task);
--   - get_step_transitive_dependencies joined each level of its recursion with a sequential
--     scan of workflow_step_edges.
-- Measured in e2e_throughput on the 2-core build machine (pg_stat_user_tables of the
-- benchmark's database): 27,009 sequential scans of workflow_steps reading 6.6 million rows
-- and 9,452 of workflow_step_edges reading 2.0 million, for 5,400 steps; a whole-machine
-- profile put 12 % of the server's CPU in sequential scans.
--
-- Now a parent's state is a scalar subquery on the primary key and each recursion level a
-- lateral probe of the edges' primary key (the OFFSET 0 keeps it from being flattened back
-- into a join). Neither shape can become a hash join, and a unique-key probe is the cheapest
-- plan at any table size, so the plans no longer depend on statistics. Same signatures, same
-- results.

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
                  (count(*) FILTER (
                      WHERE (SELECT parent.current_state
                               FROM tasker.workflow_steps parent
                              WHERE parent.workflow_step_uuid = e.from_step_uuid)
                            IN ('complete', 'resolved_manually')))::integer AS done
             FROM tasker.workflow_step_edges e
            WHERE e.to_step_uuid = s.workflow_step_uuid
           ) deps
     WHERE s.task_uuid = p_task_uuid
       AND (p_step_uuids IS NULL OR s.workflow_step_uuid = ANY (p_step_uuids))
     ORDER BY s.created_at, s.workflow_step_uuid
$$;

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

-- The queue read, pinned to its intended plan: walk queue_messages_fifo_idx in msg_id order
-- and stop after p_limit visible messages. A queue table's size swings between empty and a
-- backlog, so its statistics are never right for long; planned while the table looked small,
-- the read became a bitmap scan of every entry of the queue, dead ones included (bitmap scans
-- never mark index entries dead), then a sort: 80 buffer reads per read in e2e_throughput
-- instead of a handful. With sequential and bitmap scans off for this function only, the
-- ordered index walk (and the primary-key probe of the UPDATE) is the only plan left. The
-- settings apply while the function runs and are restored when it returns.
ALTER FUNCTION tasker.queue_read(text, double precision, integer)
    SET enable_seqscan = off
    SET enable_bitmapscan = off;
