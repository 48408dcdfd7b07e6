//! The workload of `redis.ckpt_commits`, shared by the figure (`src/commits.rs`) and the
//! `split` diagnostic (`examples/split.rs`), so that both measure exactly the same thing.

pub mod workload;
