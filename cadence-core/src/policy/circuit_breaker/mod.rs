//! Circuit breaker: stop calling a dependency that keeps failing (CB-1…8).

/// The state of a circuit breaker (CB-3).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls pass; failures are counted.
    Closed,
    /// A limited number of probe calls pass to test recovery.
    HalfOpen,
    /// Every call is rejected at once.
    Open,
}

impl CircuitState {
    /// `closed`, `half_open` or `open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
}
