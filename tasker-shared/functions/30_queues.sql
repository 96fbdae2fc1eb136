-- Durable queues (the tables are in the schema): send, read with a visibility timeout,
-- archive. Sending notifies the queue's channel in the same transaction, so a listener wakes
-- when the message commits.

-- The notification channel of a queue.
CREATE OR REPLACE FUNCTION tasker.queue_channel(p_queue_name text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'tasker_queue_' || p_queue_name $$;

-- Send one message, visible after p_delay_seconds, and notify the queue's channel.
CREATE OR REPLACE FUNCTION tasker.queue_send(p_queue_name text, p_message jsonb, p_delay_seconds double precision DEFAULT 0)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO tasker.queue_messages (queue_name, vt, message)
    VALUES (p_queue_name, clock_timestamp() + make_interval(secs => p_delay_seconds), p_message)
    RETURNING msg_id INTO new_id;
    PERFORM pg_notify(tasker.queue_channel(p_queue_name), new_id::text);
    RETURN new_id;
END
$$;

-- Send many messages in one statement with one notification.
CREATE OR REPLACE FUNCTION tasker.queue_send_batch(p_queue_name text, p_messages jsonb[])
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    INSERT INTO tasker.queue_messages (queue_name, message)
    SELECT p_queue_name, m FROM unnest(p_messages) AS m
    RETURNING msg_id;
    PERFORM pg_notify(tasker.queue_channel(p_queue_name), 'batch');
END
$$;

-- Claim up to p_limit visible messages and hide them for p_vt_seconds.
-- PL/pgSQL rather than SQL: a SQL function's statements are planned on every call, PL/pgSQL
-- keeps the plan for the session, and this runs for every message consumed. Pinned to its
-- intended plan, the ordered walk of queue_messages_fifo_idx: a queue's size swings between
-- empty and a backlog, so its statistics are never right for long, and a read planned while
-- the table looked small became a bitmap scan of every entry of the queue, dead ones included.
CREATE OR REPLACE FUNCTION tasker.queue_read(p_queue_name text, p_vt_seconds double precision, p_limit integer)
RETURNS TABLE (msg_id bigint, read_ct integer, enqueued_at timestamptz, vt timestamptz, message jsonb)
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
BEGIN
    RETURN QUERY
    WITH claimed AS (
        SELECT q.msg_id
          FROM tasker.queue_messages q
         WHERE q.queue_name = p_queue_name AND q.vt <= clock_timestamp()
         ORDER BY q.msg_id
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    )
    UPDATE tasker.queue_messages m
       SET vt = clock_timestamp() + make_interval(secs => p_vt_seconds),
           read_ct = m.read_ct + 1
      FROM claimed
     WHERE m.msg_id = claimed.msg_id
    RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message;
END
$$;

-- Move a message to the archive; false when it no longer exists.
CREATE OR REPLACE FUNCTION tasker.queue_archive_message(p_queue_name text, p_msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    was_archived boolean;
BEGIN
    WITH moved AS (
        DELETE FROM tasker.queue_messages
         WHERE queue_name = p_queue_name AND msg_id = p_msg_id
        RETURNING msg_id, queue_name, read_ct, enqueued_at, message
    ), archived AS (
        INSERT INTO tasker.queue_archive (msg_id, queue_name, read_ct, enqueued_at, message)
        SELECT msg_id, queue_name, read_ct, enqueued_at, message FROM moved
        RETURNING 1
    )
    SELECT count(*) > 0 INTO was_archived FROM archived;
    RETURN was_archived;
END
$$;
