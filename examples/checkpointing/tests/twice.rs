//! `cargo run -p example-checkpointing` twice: the first run crashes in `provision`, the
//! second resumes and skips what was completed.

use std::process::Command;

fn run(dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_example-checkpointing"))
        .arg(dir)
        .output()
        .expect("run the example");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn crashes_then_resumes_skipping_completed_measures() {
    let dir = std::env::temp_dir().join(format!(
        "cadence-example-checkpointing-test-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);

    let (code, first) = run(&dir);
    assert_eq!(code, 1, "the first run crashes:\n{first}");
    assert!(first.contains("create_account: running"), "{first}");
    assert!(
        first.contains("checkpoint saved after send_welcome"),
        "{first}"
    );
    assert!(first.contains("provision: simulated crash"), "{first}");
    assert!(!first.contains("notify"), "{first}");

    let (code, second) = run(&dir);
    assert_eq!(code, 0, "the second run resumes and succeeds:\n{second}");
    assert!(
        second.contains("resuming from a checkpoint: 2 measures completed"),
        "{second}"
    );
    assert!(second.contains("create_account: skipped"), "{second}");
    assert!(second.contains("send_welcome: skipped"), "{second}");
    assert!(!second.contains("create_account: running"), "{second}");
    assert!(second.contains("provision: running"), "{second}");
    assert!(second.contains("notify: running"), "{second}");
    assert!(second.contains("done: Signup"), "{second}");
    assert!(second.contains("account_id: Some(4242)"), "{second}");

    // Success cleared the checkpoint and the marker: the cycle starts over.
    let (code, third) = run(&dir);
    assert_eq!(code, 1, "{third}");
    assert!(!third.contains("skipped"), "{third}");
    std::fs::remove_dir_all(&dir).unwrap();
}
