//! A bounded pool of open handles, for computes over more files than the process may open.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

struct Entry<H> {
    handle: Arc<H>,
    users: usize,
    last_used: u64,
}

struct State<K, H> {
    entries: HashMap<K, Entry<H>>,
    /// Keys being opened right now (they count against `max_open`).
    opening: usize,
    tick: u64,
    opened: u64,
    evicted: u64,
    peak_open: usize,
}

/// Handles opened on demand, at most `max_open` at once: when the pool is full, the least
/// recently used handle that nobody holds is closed (dropped) first, and a caller waits when
/// every handle is in use. With [`HandlePool::per_key_limit`], at most that many callers hold
/// the handle of one key at once (1 = exclusive, for handles that are not thread-safe).
///
/// Tasks call [`HandlePool::get`] around their read; thousands of files then never exceed the
/// process's open-file limit ("too many open files").
///
/// ```
/// use brisk_guard::HandlePool;
///
/// let pool = HandlePool::new(2, |n: &u32| Ok::<_, String>(format!("handle {n}")));
/// let a = pool.get(&1).unwrap();
/// assert_eq!(*a, "handle 1");
/// drop(a);
/// for n in 0..10 {
///     pool.get(&n).unwrap();
/// }
/// assert!(pool.stats().peak_open <= 2);
/// ```
pub struct HandlePool<K, H, E> {
    max_open: usize,
    per_key: Option<usize>,
    #[allow(clippy::type_complexity, reason = "a boxed opener")]
    open: Box<dyn Fn(&K) -> Result<H, E> + Send + Sync>,
    state: Mutex<State<K, H>>,
    freed: Condvar,
}

/// What a pool did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Handles opened.
    pub opened: u64,
    /// Handles closed to make room.
    pub evicted: u64,
    /// The most handles open at once.
    pub peak_open: usize,
    /// Handles open now.
    pub open_now: usize,
}

impl<K, H, E> fmt::Debug for HandlePool<K, H, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlePool")
            .field("max_open", &self.max_open)
            .field("per_key", &self.per_key)
            .finish_non_exhaustive()
    }
}

impl<K, H, E> HandlePool<K, H, E>
where
    K: Eq + Hash + Clone,
{
    /// A pool of at most `max_open` handles (at least 1) opened by `open`.
    pub fn new(max_open: usize, open: impl Fn(&K) -> Result<H, E> + Send + Sync + 'static) -> Self {
        Self {
            max_open: max_open.max(1),
            per_key: None,
            open: Box::new(open),
            state: Mutex::new(State {
                entries: HashMap::new(),
                opening: 0,
                tick: 0,
                opened: 0,
                evicted: 0,
                peak_open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// At most `n` (at least 1) callers hold one key's handle at once.
    #[must_use]
    pub fn per_key_limit(mut self, n: usize) -> Self {
        self.per_key = Some(n.max(1));
        self
    }

    fn lock(&self) -> MutexGuard<'_, State<K, H>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The handle of `key`, opened if needed; blocks while the pool is full of handles in
    /// use (or the key's handle is held by `per_key_limit` callers). The handle returns to
    /// the pool when the guard drops.
    ///
    /// # Errors
    /// The opener's error (nothing is added to the pool).
    pub fn get(&self, key: &K) -> Result<PoolGuard<'_, K, H, E>, E> {
        let mut st = self.lock();
        loop {
            st.tick += 1;
            let tick = st.tick;
            if let Some(e) = st.entries.get_mut(key) {
                if self.per_key.is_none_or(|cap| e.users < cap) {
                    e.users += 1;
                    e.last_used = tick;
                    let handle = Arc::clone(&e.handle);
                    return Ok(PoolGuard {
                        pool: self,
                        key: key.clone(),
                        handle: Some(handle),
                    });
                }
            } else if st.entries.len() + st.opening < self.max_open {
                // Room: open outside the lock (opening can be slow).
                st.opening += 1;
                drop(st);
                // A panicking opener gives its place back before the panic goes on to the
                // caller (a task, whose executor turns it into an error): waiting callers
                // must never block on an opening that will not finish.
                let opened = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    (self.open)(key)
                })) {
                    Ok(opened) => opened,
                    Err(panic) => {
                        self.lock().opening -= 1;
                        self.freed.notify_all();
                        std::panic::resume_unwind(panic);
                    }
                };
                st = self.lock();
                st.opening -= 1;
                let handle = match opened {
                    Ok(h) => Arc::new(h),
                    Err(e) => {
                        self.freed.notify_all();
                        return Err(e);
                    }
                };
                st.opened += 1;
                // Another caller may have opened the same key meanwhile: keep theirs.
                if !st.entries.contains_key(key) {
                    st.entries.insert(
                        key.clone(),
                        Entry {
                            handle,
                            users: 0,
                            last_used: tick,
                        },
                    );
                    let open_now = st.entries.len();
                    st.peak_open = st.peak_open.max(open_now);
                }
                continue;
            } else if let Some(victim) = st
                .entries
                .iter()
                .filter(|(_, e)| e.users == 0)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            {
                // Full: close the least recently used idle handle.
                st.entries.remove(&victim);
                st.evicted += 1;
                continue;
            }
            st = self.freed.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Counters of what the pool did.
    #[must_use]
    pub fn stats(&self) -> PoolStats {
        let st = self.lock();
        PoolStats {
            opened: st.opened,
            evicted: st.evicted,
            peak_open: st.peak_open,
            open_now: st.entries.len(),
        }
    }

    /// Closes every handle nobody holds.
    pub fn close_idle(&self) {
        let mut st = self.lock();
        st.entries.retain(|_, e| e.users > 0);
    }
}

/// A handle borrowed from a [`HandlePool`]; returned when dropped.
pub struct PoolGuard<'p, K: Eq + Hash + Clone, H, E> {
    pool: &'p HandlePool<K, H, E>,
    key: K,
    /// `None` only inside `drop`, which lets go of the handle *before* telling the pool: the
    /// pool may close an idle handle at once, so none may outlive its user count.
    handle: Option<Arc<H>>,
}

impl<K: Eq + Hash + Clone, H, E> Deref for PoolGuard<'_, K, H, E> {
    type Target = H;
    fn deref(&self) -> &H {
        self.handle
            .as_deref()
            .expect("the handle is present until the guard drops")
    }
}

impl<K: Eq + Hash + Clone, H, E> Drop for PoolGuard<'_, K, H, E> {
    fn drop(&mut self) {
        drop(self.handle.take());
        let mut st = self.pool.lock();
        st.tick += 1;
        let tick = st.tick;
        if let Some(e) = st.entries.get_mut(&self.key) {
            e.users = e.users.saturating_sub(1);
            e.last_used = tick;
        }
        drop(st);
        self.pool.freed.notify_all();
    }
}
