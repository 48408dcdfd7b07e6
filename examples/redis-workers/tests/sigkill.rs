//! A SIGKILLed worker's run is finished by another worker with no committed measure re-run
//! (CKP-9, CKP-14), against the real redis-server of `CADENCE_REDIS_URL`.

use std::process::Command;

#[test]
fn a_killed_workers_run_is_resumed_by_the_other_worker() {
    let required = ["CADENCE_SERVICES_REQUIRED", "CI"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty() && v != "0" && v != "false"));
    let url = match std::env::var("CADENCE_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if required => {
            panic!("CADENCE_REDIS_URL is not set, but CADENCE_SERVICES_REQUIRED or CI is")
        }
        _ => {
            eprintln!("SKIPPED: CADENCE_REDIS_URL is not set (run `cargo xtask test`)");
            return;
        }
    };
    let out = Command::new(env!("CARGO_BIN_EXE_redis-workers"))
        .args(["demo", &url])
        .output()
        .expect("running the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("no committed measure re-ran"), "{stdout}");
    assert!(stdout.contains("SIGKILLed worker"), "{stdout}");
    println!("{stdout}");
}
