//! The core checkpoint-store conformance suite (CKP-13) against a real redis-server.

mod common;

use cadence_core::checkpoint::conformance::{self, Options, RawAccess, RawFuture};
use cadence_redis::RedisStore;

/// Raw access to the record key, for the corrupt-data contract.
struct Raw(RedisStore);

impl RawAccess for Raw {
    fn plant<'a>(&'a self, cadence: &'a str, run_id: &'a str, bytes: Vec<u8>) -> RawFuture<'a, ()> {
        Box::pin(async move {
            self.0
                .put_raw(cadence, run_id, &bytes)
                .await
                .expect("planting raw bytes in Redis");
        })
    }

    fn read_raw<'a>(&'a self, cadence: &'a str, run_id: &'a str) -> RawFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            self.0
                .get_raw(cadence, run_id)
                .await
                .expect("reading raw bytes from Redis")
        })
    }
}

// CKP-13, REDIS-1: the whole suite, on one shared connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_conformance_suite() {
    let Some(redis) = common::shared("conformance").await else {
        return;
    };
    let store = redis.store();
    let raw = Raw(store.clone());
    conformance::run_all(&store, &raw, &Options::default()).await;
}

// The same under the default prefix (`cadence`), as applications use it: the suite's names
// are unique per call, so it can share the keyspace.
#[tokio::test]
async fn the_suite_passes_under_the_default_prefix() {
    let Some(url) = common::redis_url("conformance-default-prefix") else {
        return;
    };
    let store = RedisStore::connect(url).await.unwrap();
    let raw = Raw(store.clone());
    conformance::run_all(
        &store,
        &raw,
        &Options::default().with_lease_ttl(std::time::Duration::from_millis(200)),
    )
    .await;
}
