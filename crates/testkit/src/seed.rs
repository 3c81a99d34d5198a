//! The seed of a randomised test: `SEED=<u64>` replays a run; otherwise a fresh one is drawn.
//! The seed is printed at the start, and again if the test panics, so failures reproduce.

/// A test's seed; prints itself again if dropped during a panic.
pub struct Seed {
    value: u64,
    name: &'static str,
}

impl Seed {
    /// Reads `SEED` from the environment, or draws one; prints it with the test's name.
    pub fn from_env(name: &'static str) -> Self {
        Self::from_env_or(name, rand::random)
    }

    /// Reads `SEED` from the environment, or takes `default()` (for a test that runs one
    /// known seed unless told otherwise); prints it with the test's name.
    pub fn from_env_or(name: &'static str, default: impl FnOnce() -> u64) -> Self {
        let value = match std::env::var("SEED") {
            Ok(s) => s
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("SEED must be a u64, got {s:?}")),
            Err(_) => default(),
        };
        eprintln!("[{name}] seed {value} (replay with SEED={value})");
        Self { value, name }
    }

    /// The seed value.
    pub fn value(&self) -> u64 {
        self.value
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "[{}] FAILED with seed {} — replay with SEED={}",
                self.name, self.value, self.value
            );
        }
    }
}
