-- The batch step transitions keep to key lookups after the tables have been analysed.
--
-- Why: enqueue_steps and transition_steps_atomic join the steps they lock to the steps table
-- and to the history rows they retire. Planned from real statistics of tables full of dead
-- rows (tasks created and deleted in a loop, which is also what a busy installation with a
-- retention job looks like), the planner can prefer hashing a whole table to a few key
-- probes, and the connection keeps that plan. The step_enqueueing benchmark's database (kept
-- with TASKER_BENCH_KEEP_DATABASE=1, one run with 3-s samples) showed it: 63,741 sequential
-- scans of workflow_steps reading 42 million rows before 20261127000010 and 2,652 reading 2.7
-- million after it, for a table of a few thousand live rows; two of three timing runs of a
-- baseline measured the 50-step batch four to five times slower than the third. With the
-- settings below: 64 scans reading 20,483 rows.
--
-- Most of those scans were not the functions' own joins but the foreign-key checks that their
-- inserts of history rows fire: each is a one-row probe of workflow_steps by primary key,
-- whose saved plan becomes a sequential scan when it is made while the statistics say the
-- table is a few pages (after a vacuum has truncated it), and stays one as the table fills
-- again. As for the queue read (20261127000009), sequential and bitmap scans are switched off
-- while these functions run, which leaves the key probes for their own statements and for any
-- check planned inside them. The settings are restored when the function returns.
ALTER FUNCTION tasker.enqueue_steps(uuid, uuid[], text, text)
    SET enable_seqscan = off
    SET enable_bitmapscan = off;

ALTER FUNCTION tasker.transition_steps_atomic(uuid[], text[], text, text, jsonb)
    SET enable_seqscan = off
    SET enable_bitmapscan = off;
