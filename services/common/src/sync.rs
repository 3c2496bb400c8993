//! Locks that recover from poisoning.
//!
//! A thread that panics while holding a std lock poisons it, and `lock()` then returns an
//! error to every later caller. The locks of this workspace guard state that each critical
//! section leaves whole (a value replaced by one assignment, one insert into or removal
//! from a map), so what a panicking holder left behind is still valid; turning one
//! request's panic into a panic of every later request would only spread it. These
//! methods take the guard either way.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub trait MutexExt<T> {
    /// The guard, poisoned or not (see the module docs for why that is right).
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T> MutexExt<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub trait RwLockExt<T> {
    /// The read guard, poisoned or not (see the module docs for why that is right).
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T>;
    /// The write guard, poisoned or not (see the module docs for why that is right).
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RwLockExt<T> for RwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, RwLock};

    use super::{MutexExt, RwLockExt};

    /// Poisons `lock` by panicking in a thread that holds it.
    fn poison<L: Send + Sync + 'static>(lock: &Arc<L>, hold: fn(&L)) {
        let lock = Arc::clone(lock);
        let _ = std::thread::spawn(move || hold(&lock)).join();
    }

    #[test]
    fn a_poisoned_mutex_still_yields_its_value() {
        let mutex = Arc::new(Mutex::new(1));
        poison(&mutex, |mutex| {
            let mut value = mutex.lock().unwrap();
            *value = 2;
            panic!("poison the lock");
        });
        assert!(mutex.is_poisoned());
        assert_eq!(*mutex.lock_unpoisoned(), 2);
    }

    #[test]
    fn a_poisoned_rwlock_still_yields_its_value() {
        let lock = Arc::new(RwLock::new(1));
        poison(&lock, |lock| {
            let mut value = lock.write().unwrap();
            *value = 2;
            panic!("poison the lock");
        });
        assert!(lock.is_poisoned());
        assert_eq!(*lock.read_unpoisoned(), 2);
        *lock.write_unpoisoned() = 3;
        assert_eq!(*lock.read_unpoisoned(), 3);
    }
}
