// NOTE-1: a note takes the score.
use cadence_core::{BoxError, note};

#[note]
async fn charge() -> Result<(), BoxError> {
    Ok(())
}

fn main() {}
