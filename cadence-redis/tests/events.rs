//! RedisEventSink and RedisEventReader against a real redis-server (REDIS-5, EVT-8).

mod common;

use std::time::{Duration, Instant};

use cadence_core::event::{Event, EventKind, Sink};
use cadence_core::{BoxError, Cadence, EventEmitter, note};
use cadence_redis::{Redis, RedisEventReader, RedisEventSink, StartAt};

fn started(run: &str, seq: u64) -> Event {
    Event::new(
        run.to_owned(),
        "c",
        seq,
        EventKind::CadenceStarted {
            resumed: false,
            replayed: false,
        },
    )
}

/// Reads `n` events, failing the test after 10 s.
async fn read_n(reader: &mut RedisEventReader, n: usize) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} events",
            out.len()
        );
        let batch = reader.poll().await.expect("reading events");
        out.extend(batch.into_iter().map(|(_, e)| e));
    }
    out
}

// REDIS-5: a cadence's events, through an emitter's Redis sink, read back by a reader on its
// own connection, in order and equal to what local subscribers saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_events_round_trip_through_the_stream() {
    let Some(redis) = common::shared("events").await else {
        return;
    };
    let sink = redis.event_sink();
    let key = sink.stream_key();
    assert_eq!(key, format!("{}:events", redis.prefix()));
    let emitter = EventEmitter::new().with_sink(sink);
    let mut local = emitter.subscribe();
    let mut reader = redis.event_reader().starting_at(StartAt::Beginning);
    let c = Cadence::<u32>::new("streamed")
        .then(
            "a",
            note::from_fn(|n: &mut u32| {
                Box::pin(async move {
                    *n += 1;
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .then(
            "b",
            note::from_fn(|n: &mut u32| {
                Box::pin(async move {
                    *n += 1;
                    Ok::<_, BoxError>(())
                })
            }),
        )
        .with_hooks(emitter.clone())
        .build()
        .unwrap();
    c.run(0).await.unwrap();
    c.run(0).await.unwrap();
    assert!(emitter.shutdown().await);
    let mut expected = Vec::new();
    while let Ok(e) = local.try_recv() {
        expected.push(e);
    }
    assert_eq!(expected.len(), 2 * 10, "{expected:#?}");
    let got = read_n(&mut reader, expected.len()).await;
    assert_eq!(got, expected);
    // Nothing more.
    let more = reader.with_block(Duration::from_millis(50));
    let mut more = more;
    assert!(more.poll().await.unwrap().is_empty());
}

// REDIS-5: `MAXLEN ~` bounds the stream; the stream has the TTL; counters add up.
#[tokio::test]
async fn the_stream_is_trimmed_approximately() {
    let Some(redis) = common::shared("maxlen").await else {
        return;
    };
    let sink = redis.event_sink().with_max_len(100);
    for i in 0..3000 {
        sink.send(&started("r", i)).await.unwrap();
    }
    sink.flush().await.unwrap();
    assert_eq!((sink.written(), sink.dropped()), (3000, 0));
    let mut conn = redis.connection();
    let len: u64 = redis::cmd("XLEN")
        .arg(sink.stream_key())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((100..1000).contains(&len), "XLEN {len}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(sink.stream_key())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0, "the stream has a TTL: {ttl}");
    // The newest entries are kept.
    let mut reader = redis.event_reader().starting_at(StartAt::Beginning);
    let got = reader.poll().await.unwrap();
    assert_eq!(got.last().unwrap().1.seq, 2999);
}

// REDIS-5: `Latest` starts after what is in the stream at the first read; `After(id)`
// continues an earlier reader; entries without an event are skipped.
#[tokio::test]
async fn readers_start_latest_or_after_an_id() {
    let Some(redis) = common::shared("start").await else {
        return;
    };
    let sink = redis.event_sink();
    for i in 0..3 {
        sink.send(&started("old", i)).await.unwrap();
    }
    sink.flush().await.unwrap();
    let mut latest = redis.event_reader().with_block(Duration::from_millis(50));
    assert!(latest.poll().await.unwrap().is_empty());
    let mut conn = redis.connection();
    let _: String = redis::cmd("XADD")
        .arg(sink.stream_key())
        .arg("*")
        .arg("not-an-event")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    for i in 0..2 {
        sink.send(&started("new", i)).await.unwrap();
    }
    sink.flush().await.unwrap();
    let first = latest.next_entry().await.unwrap();
    assert_eq!((&*first.1.run_id, first.1.seq), ("new", 0));
    assert_eq!(latest.skipped(), 1);
    let mut after = redis
        .event_reader()
        .starting_at(StartAt::After(first.0.clone()));
    let second = after.next().await.unwrap();
    assert_eq!((&*second.run_id, second.seq), ("new", 1));
    assert_eq!(latest.next().await.unwrap(), second);
}

// REDIS-5: failures count as drops and never block: an unreachable Redis, and a full buffer.
#[tokio::test]
async fn failures_are_counted_drops_and_never_block() {
    let port = common::free_port();
    let redis = Redis::builder(format!("redis://127.0.0.1:{port}/"))
        .with_command_timeout(Duration::from_millis(200))
        .connect_lazy()
        .unwrap();
    let sink = RedisEventSink::with_buffer(redis, 64);
    let started_at = Instant::now();
    for i in 0..1000 {
        sink.send(&started("r", i)).await.unwrap();
    }
    assert!(
        started_at.elapsed() < Duration::from_millis(500),
        "send blocked: {:?}",
        started_at.elapsed()
    );
    let _ = sink.flush().await;
    // Let the writer give up on what it holds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sink.dropped() < 1000 {
        assert!(Instant::now() < deadline, "dropped {}", sink.dropped());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!((sink.written(), sink.dropped()), (0, 1000));
}

// REDIS-5: the reader resumes after the last id it yielded when Redis comes back, with
// nothing skipped or repeated (the server persists its stream across the restart).
#[tokio::test]
async fn the_reader_resumes_after_a_restart() {
    let Some(bin) = common::server_bin("reader-restart") else {
        return;
    };
    let mut server = common::Throwaway::start_with(
        bin,
        &[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ],
        None,
    );
    let redis = Redis::builder(server.url())
        .with_command_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let sink = redis.event_sink();
    let mut reader = redis
        .event_reader()
        .starting_at(StartAt::Beginning)
        .with_block(Duration::from_millis(100));
    for i in 0..10 {
        sink.send(&started("r", i)).await.unwrap();
    }
    sink.flush().await.unwrap();
    let first: Vec<u64> = read_n(&mut reader, 10)
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(first, (0..10).collect::<Vec<_>>());

    server.kill();
    assert!(reader.poll().await.is_err(), "the outage is reported");
    server.restart();
    // Wait until writes land again, then append more.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.ping().await.is_err() {
        assert!(Instant::now() < deadline, "Redis never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dropped_before = sink.dropped();
    for i in 10..15 {
        sink.send(&started("r", i)).await.unwrap();
    }
    sink.flush().await.unwrap();
    assert_eq!(sink.dropped(), dropped_before);
    let mut rest = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while rest.len() < 5 {
        assert!(Instant::now() < deadline, "got {rest:?}");
        match reader.poll().await {
            Ok(batch) => rest.extend(batch.into_iter().map(|(_, e)| e.seq)),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(rest, [10, 11, 12, 13, 14]);
}
