//! LISTEN/NOTIFY event propagation: how long from sending a queue message until a consumer
//! that is already listening wakes up.
//!
//! What is measured (each iteration, on a tokio multi-thread runtime):
//!
//! - `send_notify_wake`: `Queue::send` (insert + `pg_notify` in one autocommitted statement)
//!   on a held connection, until `QueueListener::wait` returns the notification on the
//!   listener's own connection: the wake-up latency a worker or the orchestrator sees;
//! - `send_notify_wake_read`: the same plus the consumer's `Queue::read` claiming the message,
//!   the whole hand-off from producer to consumer;
//! - `pg_notify_wake`: a bare `SELECT pg_notify(...)` to the same listener, the floor the
//!   queue adds its insert to.
//!
//! Outside the timed region: connecting, LISTEN, and deleting each message after the
//! iteration (so the queue stays empty and every read finds exactly one message). Nothing
//! sleeps. Besides criterion's estimates, every timed iteration is recorded and P50/P95/P99 are
//! written to `<criterion home>/event_propagation/percentiles.json` (the target is P95 <= 1 ms).
//!
//! Run: `cargo bench --package tasker-shared --features benchmarks event_propagation`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::Criterion;
use sqlx::pool::PoolConnection;
use sqlx::Postgres;
use tasker_shared::messaging::{Queue, QueueListener, StepMessage, Wake};
use tasker_test_support::{
    bench_main, counted, criterion_config, runtime, server_context, timed, BenchArgs,
    BenchDatabase, BenchMode, LatencyLog,
};
use tokio::sync::Mutex;
use uuid::Uuid;

const QUEUE: &str = "bench_event_propagation";

static LOG: LatencyLog = LatencyLog::new();

struct Fixture {
    db: BenchDatabase,
    queue: Queue,
    /// The listener and the producer's connection; one benchmark at a time uses them.
    io: Mutex<Io>,
}

struct Io {
    listener: QueueListener,
    producer: PoolConnection<Postgres>,
    consumer: PoolConnection<Postgres>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        runtime().block_on(async {
            let db = BenchDatabase::create(4).await;
            let queue = Queue::new(QUEUE).expect("valid queue name");
            queue.create(&db.pool).await.expect("creating the queue");
            // a fallback far beyond any iteration: a wake by poll would be a failure here
            let listener = QueueListener::connect(
                &db.pool,
                std::slice::from_ref(&queue),
                Duration::from_secs(30),
            )
            .await
            .expect("connecting the listener");
            let producer = db.pool.acquire().await.expect("producer connection");
            let consumer = db.pool.acquire().await.expect("consumer connection");
            Fixture {
                db,
                queue,
                io: Mutex::new(Io {
                    listener,
                    producer,
                    consumer,
                }),
            }
        })
    })
}

#[derive(Clone, Copy)]
enum Variant {
    SendWake,
    SendWakeRead,
    NotifyWake,
}

impl Variant {
    fn id(self) -> &'static str {
        match self {
            Variant::SendWake => "send_notify_wake",
            Variant::SendWakeRead => "send_notify_wake_read",
            Variant::NotifyWake => "pg_notify_wake",
        }
    }
}

async fn run(fx: &Fixture, variant: Variant, iters: u64) -> Duration {
    let mut io = fx.io.lock().await;
    let Io {
        listener,
        producer,
        consumer,
    } = &mut *io;
    // anything left from an earlier benchmark would wake the listener early
    listener.drain();
    let message = StepMessage {
        task_uuid: Uuid::now_v7(),
        workflow_step_uuid: Uuid::now_v7(),
        attempt: 1,
    };
    let channel = fx.queue.channel();
    LOG.batch(variant.id(), iters);
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let msg_id = match variant {
            Variant::NotifyWake => {
                sqlx::query("SELECT pg_notify($1, 'bench')")
                    .bind(&channel)
                    .execute(&mut **producer)
                    .await
                    .expect("pg_notify");
                None
            }
            _ => Some(
                fx.queue
                    .send(&mut **producer, &message)
                    .await
                    .expect("sending"),
            ),
        };
        match listener.wait().await.expect("waiting for the notification") {
            Wake::Notified(queue) if queue == QUEUE => {}
            other => panic!("expected a notification on {QUEUE}, got {other:?}"),
        }
        if let Variant::SendWakeRead = variant {
            let claimed = fx
                .queue
                .read_raw(&mut **consumer, Duration::from_secs(30), 1)
                .await
                .expect("reading");
            assert_eq!(claimed.len(), 1, "the sent message was not there to claim");
        }
        let elapsed = start.elapsed();
        total += elapsed;
        LOG.record(variant.id(), elapsed);
        if let Some(id) = msg_id {
            fx.queue
                .delete(&mut **consumer, id)
                .await
                .expect("deleting the message");
        }
    }
    total
}

fn bench_event_propagation(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_propagation");
    for variant in [
        Variant::SendWake,
        Variant::SendWakeRead,
        Variant::NotifyWake,
    ] {
        group.bench_function(variant.id(), |b| {
            let fx = fixture();
            b.to_async(timed())
                .iter_custom(counted(|iters| run(fx, variant, iters)));
        });
    }
    group.finish();
}

fn main() {
    let args = BenchArgs::from_env();
    bench_main(
        criterion_config(Duration::from_secs(3), 50),
        &[bench_event_propagation],
        || {
            // percentiles from test mode (one iteration) or profile mode would overwrite real ones
            if let (Some(fx), BenchMode::Benchmark) = (FIXTURE.get(), args.mode) {
                let context = runtime().block_on(server_context(&fx.db.pool));
                LOG.write("event_propagation", context);
            }
        },
    );
}
