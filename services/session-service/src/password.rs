//! Password hashing: argon2id with the OWASP parameters, computed off the async runtime
//! with a bounded number of hashes at once (each one takes ~19 MiB and tens of
//! milliseconds of one CPU; unbounded, a burst of logins would starve every other call).
//!
//! The hashes run on a fixed set of dedicated threads, not on tokio's blocking pool:
//! the allocator keeps each thread's freed 19 MiB block for reuse, so on a pool that
//! grows to hundreds of threads a login burst left hundreds of MiB resident for good
//! (measured: ~740 MiB after 64 concurrent registrations). With two threads the same
//! burst leaves ~245 MiB (`tests/memory.rs`); reusing one block per thread through
//! `hash_password_into_with_memory` would bring it near 2 × 19 MiB.
//!
//! Legacy bcrypt (`$2a$`/`$2b$`/`$2y$`) hashes still verify; the caller rehashes them.

use std::sync::{Arc, Mutex, OnceLock, mpsc};

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
};
use rand::RngCore;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::{domain::Password, error::Error};

/// OWASP's argon2id recommendation: 19 MiB of memory, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const LANES: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None)
        .expect("constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// What checking a password found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Right password, but the stored hash is of an old kind and should be replaced.
    YesRehash,
}

type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords on `concurrency` dedicated threads, at most that many
/// at once; callers beyond that wait asynchronously for a permit.
#[derive(Clone, Debug)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
}

impl Hasher {
    pub fn new(concurrency: usize) -> Self {
        let concurrency = concurrency.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..concurrency {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking a job, never while running it.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panicking hash must not take the thread with it; the
                            // caller sees its result channel close and answers INTERNAL.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            // Every Hasher is gone: the process is shutting down.
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawn a password-hashing thread");
        }
        Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            jobs,
        }
    }

    /// A new argon2id hash of `password`.
    pub async fn hash(&self, password: Password) -> Result<String, Error> {
        self.blocking(move || hash_now(password.expose())).await?
    }

    /// Checks `password` against `stored`. With no stored hash (unknown e-mail) it checks
    /// against a fixed dummy hash, so the answer takes as long as for a real user.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<String>,
    ) -> Result<Verified, Error> {
        self.blocking(move || match stored {
            Some(stored) => verify_now(password.expose(), &stored),
            None => {
                let _ = verify_now(password.expose(), dummy_hash());
                Verified::No
            }
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let _permit = self
            .permits
            .acquire()
            .instrument(tracing::debug_span!("password_hash_permit"))
            .await
            .map_err(|_| Error::Internal("password hasher closed".into()))?;
        // The hashing thread inherits the caller's span, so its logs keep the request id.
        let span = tracing::Span::current();
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone (its request cancelled); nothing to tell it then.
            let _ = done.send(span.in_scope(work));
        });
        self.jobs
            .send(job)
            .map_err(|_| Error::Internal("password hashing threads are gone".into()))?;
        result
            .await
            .map_err(|_| Error::Internal("password hashing job failed".into()))
    }
}

fn hash_now(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Internal(format!("salt: {e}")))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
}

fn verify_now(password: &str, stored: &str) -> Verified {
    if stored.starts_with("$2") {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Verified::YesRehash,
            _ => Verified::No,
        };
    }
    let Ok(hash) = PasswordHash::new(stored) else {
        tracing::warn!("a stored password hash cannot be parsed");
        return Verified::No;
    };
    // The parameters come from the stored hash, so older argon2 hashes still verify.
    if argon2()
        .verify_password(password.as_bytes(), &hash)
        .is_err()
    {
        return Verified::No;
    }
    let current = hash.algorithm == Algorithm::Argon2id.ident()
        && Params::try_from(&hash).is_ok_and(|p| {
            p.m_cost() == MEMORY_KIB && p.t_cost() == ITERATIONS && p.p_cost() == LANES
        });
    if current {
        Verified::Yes
    } else {
        Verified::YesRehash
    }
}

/// An argon2id hash of a random password, made once, for unknown e-mails.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut random = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut random);
        hash_now(&format!("{random:?}")).expect("hash a dummy password")
    })
}

/// Computes the dummy hash now, at start-up, so the first unknown-e-mail login is not slower.
pub fn warm_up() {
    let _ = dummy_hash();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password() {
        let hasher = Hasher::new(2);
        let hash = hasher
            .hash(Password::new("correct horse 1".into()))
            .await
            .unwrap();

        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_eq!(
            hasher
                .verify(Password::new("correct horse 1".into()), Some(hash.clone()))
                .await
                .unwrap(),
            Verified::Yes
        );
        assert_eq!(
            hasher
                .verify(Password::new("wrong horse 1".into()), Some(hash))
                .await
                .unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn a_legacy_bcrypt_hash_verifies_and_asks_for_a_rehash() {
        let hasher = Hasher::new(1);
        let legacy = bcrypt::hash("legacy pass 1", 4).unwrap();

        assert_eq!(
            hasher
                .verify(Password::new("legacy pass 1".into()), Some(legacy.clone()))
                .await
                .unwrap(),
            Verified::YesRehash
        );
        assert_eq!(
            hasher
                .verify(Password::new("other pass 1".into()), Some(legacy))
                .await
                .unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let hasher = Hasher::new(1);

        assert_eq!(
            hasher
                .verify(Password::new("anything 1".into()), None)
                .await
                .unwrap(),
            Verified::No
        );
    }
}
