//! Password hashing: argon2id with the OWASP parameters, computed off the async runtime
//! with a bounded number of hashes at once (each one takes ~19 MiB and tens of
//! milliseconds of one CPU; unbounded, a burst of logins would starve every other call),
//! and a bounded queue: past it a call is refused at once, and a queued job whose caller
//! has gone is skipped (measured before: 400 logins given up after 0.25 s left their
//! hashes queued, and the next login waited 1.3–5.5 s for them; see docs/session-service.md).
//!
//! The hashes run on a fixed set of dedicated threads, not on tokio's blocking pool, and
//! each thread computes every hash in one argon2 working area of its own ([`Memory`],
//! 19 MiB, allocated on its first hash and kept), through
//! `hash_password_into_with_memory`. Letting argon2 allocate per hash instead left the
//! allocator holding freed 19 MiB blocks per thread: ~740 MiB resident after 64
//! concurrent registrations on tokio's blocking pool, ~250 MiB with two dedicated
//! threads; with one working area per thread it is the threads' areas and little else
//! (`tests/memory.rs`, docs/session-service.md "Memory").
//!
//! Legacy bcrypt (`$2a$`/`$2b$`/`$2y$`) hashes still verify; the caller rehashes them.

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::Duration,
};

use argon2::{
    Algorithm, Argon2, Block, Params, Version,
    password_hash::{Output, ParamsString, PasswordHash, SaltString},
};
use rand::RngCore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tracing::Instrument;

use crate::{domain::Password, error::Error};

/// OWASP's argon2id recommendation: 19 MiB of memory, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const LANES: u32 = 1;

/// The current parameters: what every new hash uses.
#[allow(
    clippy::expect_used,
    reason = "constants within argon2's bounds: every hash, in every test too, builds them"
)]
fn params() -> Params {
    Params::new(MEMORY_KIB, ITERATIONS, LANES, None).expect("constant argon2 parameters are valid")
}

/// The argon2 working area of one hashing thread, reused by every hash it computes.
///
/// It grows on first use to the current parameters' size (`MEMORY_KIB` blocks of 1 KiB)
/// and stays: argon2 writes every block before reading it, so nothing needs clearing
/// between hashes. A stored hash with a larger memory cost (an old parameter set) is
/// verified in a temporary area instead, so the kept one never outgrows the current size.
#[derive(Default)]
pub struct Memory {
    blocks: Vec<Block>,
}

impl Memory {
    /// Runs `work` with at least `count` blocks.
    fn with<T>(&mut self, count: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        let kept = params().block_count();
        if count > kept {
            return work(&mut vec![Block::default(); count]);
        }
        if self.blocks.len() < kept {
            self.blocks.resize(kept, Block::default());
        }
        work(&mut self.blocks)
    }

    /// The raw argon2 output of `password` with `salt` under `argon2`, `len` bytes.
    fn hash(
        &mut self,
        argon2: &Argon2<'_>,
        params: &Params,
        password: &[u8],
        salt: &[u8],
        len: usize,
    ) -> Result<Output, argon2::password_hash::Error> {
        self.with(params.block_count(), |blocks| {
            Output::init_with(len, |out| {
                argon2
                    .hash_password_into_with_memory(password, salt, out, blocks)
                    .map_err(Into::into)
            })
        })
    }
}

/// What checking a password found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Right password, but the stored hash is of an old kind and should be replaced.
    YesRehash,
}

/// A hash to compute, given the working area of the thread that runs it.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// How long a caller refused by a full queue is told to wait: about what the threads
/// need to work through a full queue of tens of hashes.
pub const OVERLOADED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Hashes and verifies passwords on `concurrency` dedicated threads.
///
/// At most `concurrency + queue` hashes are admitted at once (running or waiting); a
/// call beyond them fails at once with [`Error::Overloaded`], so a burst cannot build a
/// queue that every later login waits behind. A waiting job whose caller has gone
/// (deadline passed, client disconnected) is skipped when its turn comes, so abandoned
/// logins cost no CPU and never delay the ones still waiting.
#[derive(Clone, Debug)]
pub struct Hasher {
    admitted: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    counts: Arc<HasherCounts>,
}

/// What the hasher refused or skipped, for `/metrics`.
#[derive(Debug, Default)]
pub struct HasherCounts {
    /// Calls refused because the queue was full.
    pub rejected: AtomicU64,
    /// Queued jobs skipped because their caller had gone.
    pub abandoned: AtomicU64,
    /// Hashes computed (hash or verify).
    pub computed: AtomicU64,
}

/// A place in the hashing queue, taken before the work that leads to a hash (so a
/// full queue is known before anything else is done); used by [`HashSlot::verify`] or
/// [`HashSlot::hash`], and given back when dropped unused.
#[derive(Debug)]
pub struct HashSlot {
    permit: OwnedSemaphorePermit,
    jobs: mpsc::Sender<Job>,
    counts: Arc<HasherCounts>,
}

/// Raises the calling thread's nice value by `nice`, so it yields the CPUs to the
/// process's other threads when they are short. On Linux the nice value is per thread
/// (setpriority(2), "Bugs"), so this touches the hashing thread only. A refusal (a
/// sandbox forbidding it) is logged and the thread hashes at the process's priority.
fn lower_priority(nice: u8) {
    if nice == 0 {
        return;
    }
    if let Err(error) = rustix::process::nice(i32::from(nice)) {
        tracing::warn!(%error, nice, "cannot lower the password-hashing thread's priority");
    }
}

impl Hasher {
    #[allow(
        clippy::expect_used,
        reason = "start-up: a service that cannot start its hashing threads cannot serve"
    )]
    pub fn new(concurrency: usize, queue: usize, nice: u8) -> Self {
        let concurrency = concurrency.max(1);
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..concurrency {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || {
                    lower_priority(nice);
                    let mut memory = Memory::default();
                    loop {
                        // The lock is held only while taking a job, never while running it.
                        let job = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panicking hash must not take the thread with it; the
                            // caller sees its result channel close and answers INTERNAL.
                            Ok(job) => {
                                let run = || job(&mut memory);
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
                            }
                            // Every Hasher is gone: the process is shutting down.
                            Err(_) => return,
                        }
                    }
                })
                .expect("spawn a password-hashing thread");
        }
        Self {
            admitted: Arc::new(Semaphore::new(concurrency + queue)),
            jobs,
            counts: Arc::default(),
        }
    }

    /// Counts of computed, refused and skipped hashes.
    pub fn counts(&self) -> &Arc<HasherCounts> {
        &self.counts
    }

    /// A place in the queue, or [`Error::Overloaded`] at once when it is full.
    pub fn reserve(&self) -> Result<HashSlot, Error> {
        match Arc::clone(&self.admitted).try_acquire_owned() {
            Ok(permit) => Ok(HashSlot {
                permit,
                jobs: self.jobs.clone(),
                counts: Arc::clone(&self.counts),
            }),
            Err(TryAcquireError::NoPermits) => {
                self.counts.rejected.fetch_add(1, Ordering::Relaxed);
                Err(Error::Overloaded {
                    retry_after: OVERLOADED_RETRY_AFTER,
                })
            }
            Err(TryAcquireError::Closed) => Err(Error::Internal("password hasher closed".into())),
        }
    }

    /// A new argon2id hash of `password`.
    pub async fn hash(&self, password: Password) -> Result<String, Error> {
        self.reserve()?.hash(password).await
    }

    /// Checks `password` against `stored` (see [`HashSlot::verify`]).
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<String>,
    ) -> Result<Verified, Error> {
        self.reserve()?.verify(password, stored).await
    }
}

impl HashSlot {
    /// A new argon2id hash of `password`.
    pub async fn hash(self, password: Password) -> Result<String, Error> {
        self.run(move |memory| hash_now(memory, password.expose()))
            .await?
    }

    /// Checks `password` against `stored`. With no stored hash (unknown e-mail) it checks
    /// against a fixed dummy hash, so the answer takes as long as for a real user.
    pub async fn verify(
        self,
        password: Password,
        stored: Option<String>,
    ) -> Result<Verified, Error> {
        self.run(move |memory| match stored {
            Some(stored) => Ok(verify_now(memory, password.expose(), &stored)),
            None => {
                let dummy = dummy_hash(memory)?;
                let _ = verify_now(memory, password.expose(), dummy);
                Ok(Verified::No)
            }
        })
        .await?
    }

    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let Self {
            permit,
            jobs,
            counts,
        } = self;
        // The hashing thread inherits the caller's span, so its logs keep the request id.
        let span = tracing::Span::current();
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            // The place in the queue is the job's until it has run or been skipped, so the
            // bound counts every job a thread still has to take, abandoned or not.
            let _permit = permit;
            if done.is_closed() {
                // The caller has gone (its deadline passed, or the client left): nobody
                // waits for this hash, so it is not computed.
                counts.abandoned.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let result = span.in_scope(|| work(memory));
            counts.computed.fetch_add(1, Ordering::Relaxed);
            // The caller may have gone while the hash ran; nothing to tell it then.
            let _ = done.send(result);
        });
        jobs.send(job)
            .map_err(|_| Error::Internal("password hashing threads are gone".into()))?;
        result
            .instrument(tracing::debug_span!("password_hash"))
            .await
            .map_err(|_| Error::Internal("password hashing job failed".into()))
    }
}

fn hash_now(memory: &mut Memory, password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let internal = |e: argon2::password_hash::Error| Error::Internal(format!("argon2: {e}"));
    let params = params();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let output = memory
        .hash(
            &argon2,
            &params,
            password.as_bytes(),
            &salt,
            Params::DEFAULT_OUTPUT_LEN,
        )
        .map_err(internal)?;
    let salt = SaltString::encode_b64(&salt).map_err(internal)?;
    // The PHC string argon2's own `hash_password` would produce for these inputs.
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

fn verify_now(memory: &mut Memory, password: &str, stored: &str) -> Verified {
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
    let Some((argon2, params, salt, expected)) = stored_inputs(&hash) else {
        tracing::warn!("a stored password hash has unusable argon2 parameters");
        return Verified::No;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return Verified::No;
    };
    // `Output`'s equality is constant-time.
    match memory.hash(&argon2, &params, password.as_bytes(), salt, expected.len()) {
        Ok(computed) if computed == expected => {}
        _ => return Verified::No,
    }
    let current = hash.algorithm == Algorithm::Argon2id.ident()
        && params.m_cost() == MEMORY_KIB
        && params.t_cost() == ITERATIONS
        && params.p_cost() == LANES;
    if current {
        Verified::Yes
    } else {
        Verified::YesRehash
    }
}

/// The hasher, parameters, salt and expected output a stored argon2 hash names.
fn stored_inputs<'h>(
    hash: &PasswordHash<'h>,
) -> Option<(
    Argon2<'static>,
    Params,
    argon2::password_hash::Salt<'h>,
    Output,
)> {
    let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
    let version = match hash.version {
        Some(version) => Version::try_from(version).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(hash).ok()?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    Some((argon2, params, hash.salt?, hash.hash?))
}

/// An argon2id hash of a random password, made once, for unknown e-mails.
fn dummy_hash(memory: &mut Memory) -> Result<&'static str, Error> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(dummy) = DUMMY.get() {
        return Ok(dummy);
    }
    let mut random = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let dummy = hash_now(memory, &format!("{random:?}"))?;
    // Two threads may both get here first; either hash serves, the first one set stays.
    Ok(DUMMY.get_or_init(|| dummy))
}

impl Hasher {
    /// Computes the dummy hash now, at start-up, on a hashing thread (in its working
    /// area), so the first unknown-e-mail login is not slower.
    pub async fn warm_up(&self) -> Result<(), Error> {
        self.reserve()?
            .run(|memory| dummy_hash(memory).map(drop))
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `hasher` says of `password` against a stored `hash`.
    async fn verdict(hasher: &Hasher, password: &str, hash: &str) -> Verified {
        hasher
            .verify(Password::new(password.into()), Some(hash.to_owned()))
            .await
            .unwrap()
    }

    /// The nice values of this process's threads named `password-hash-*`, from /proc.
    fn hashing_threads_nice() -> Vec<i32> {
        let mut nice = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let path = task.unwrap().path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if !comm.starts_with("password-hash") {
                continue;
            }
            let stat = std::fs::read_to_string(path.join("stat")).unwrap();
            // After the parenthesised name, field 3 (state) comes first; nice is 19.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .collect();
            nice.push(fields[19 - 3].parse().unwrap());
        }
        nice
    }

    #[test]
    fn the_hashing_threads_run_at_the_configured_nice_value() {
        let _hasher = Hasher::new(2, 1, 7);

        // Each thread sets it first thing; give both time to start.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut nice = hashing_threads_nice();
        while nice.iter().filter(|&&value| value == 7).count() < 2
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
            nice = hashing_threads_nice();
        }

        assert!(
            nice.iter().filter(|&&value| value == 7).count() >= 2,
            "hashing threads' nice values: {nice:?}"
        );
    }

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password() {
        let hasher = Hasher::new(2, 8, 0);
        let hash = hasher
            .hash(Password::new("correct horse 1".into()))
            .await
            .unwrap();

        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_eq!(
            verdict(&hasher, "correct horse 1", &hash).await,
            Verified::Yes
        );
        assert_eq!(verdict(&hasher, "wrong horse 1", &hash).await, Verified::No);
    }

    #[tokio::test]
    async fn a_legacy_bcrypt_hash_verifies_and_asks_for_a_rehash() {
        let hasher = Hasher::new(1, 8, 0);
        let legacy = bcrypt::hash("legacy pass 1", 4).unwrap();

        assert_eq!(
            verdict(&hasher, "legacy pass 1", &legacy).await,
            Verified::YesRehash
        );
        assert_eq!(
            verdict(&hasher, "other pass 1", &legacy).await,
            Verified::No
        );
    }

    #[tokio::test]
    async fn past_the_queue_bound_a_call_is_refused_at_once_until_a_place_frees() {
        let hasher = Hasher::new(1, 1, 0);
        let running = hasher.reserve().unwrap();
        let waiting = hasher.reserve().unwrap();

        let refused = hasher
            .verify(Password::new("anything 1".into()), None)
            .await;

        assert!(
            matches!(refused, Err(Error::Overloaded { retry_after }) if retry_after == OVERLOADED_RETRY_AFTER),
            "{refused:?}"
        );
        assert_eq!(hasher.counts().rejected.load(Ordering::Relaxed), 1);
        drop((running, waiting));
        assert_eq!(
            hasher
                .verify(Password::new("anything 1".into()), None)
                .await
                .unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn a_queued_job_whose_caller_has_gone_is_skipped() {
        let hasher = Hasher::new(1, 8, 0);
        // Keep the only thread busy until released, so the next job has to wait.
        let (release, blocker) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let busy = tokio::spawn(hasher.reserve().unwrap().run(move |_| {
            let _ = started.send(());
            blocker.recv()
        }));
        running.await.unwrap();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let abandoned = hasher
            .reserve()
            .unwrap()
            .run(move |_| flag.store(true, Ordering::SeqCst));

        // Queued on its first poll, then given up: its caller goes away.
        let gave_up = tokio::time::timeout(Duration::from_millis(50), abandoned).await;
        release.send(()).unwrap();
        busy.await.unwrap().unwrap().unwrap();
        // Jobs run in order, so once a later one has run the abandoned one has had its turn.
        hasher
            .verify(Password::new("anything 1".into()), None)
            .await
            .unwrap();

        assert!(gave_up.is_err(), "the caller gave up while the job waited");
        assert!(!ran.load(Ordering::SeqCst), "the abandoned job did not run");
        assert_eq!(hasher.counts().abandoned.load(Ordering::Relaxed), 1);
        assert_eq!(hasher.counts().computed.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        let hasher = Hasher::new(1, 8, 0);

        assert_eq!(
            hasher
                .verify(Password::new("anything 1".into()), None)
                .await
                .unwrap(),
            Verified::No
        );
    }
}
