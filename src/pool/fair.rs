//! A waiter queue served round-robin by key, first come first served within a key. Pools key
//! their waiters by tenant, shards key theirs by pool: one key with 200 waiters and another
//! with one take turns. No I/O, no locking: the owner holds its own lock around it.

use std::borrow::Borrow;
use std::collections::VecDeque;

use crate::fast_map::FastMap;
use std::hash::Hash;

/// What [`FairQueue::pop`] does with a waiter of the key it serves, asked of each in turn
/// from the oldest (`front`): the first it takes is served; none or `Stop` serves the oldest.
pub(super) enum Choice {
    Take,
    Skip,
    Stop,
}

/// Serves the oldest waiter: first come, first served.
pub(super) fn oldest<W>(_front: &W, _w: &W) -> Choice {
    Choice::Take
}

pub(super) struct FairQueue<K, W> {
    queues: FastMap<K, VecDeque<W>>,
    /// Keys with waiters, in the order they are served next.
    order: VecDeque<K>,
    len: usize,
}

impl<K: Hash + Eq + Clone, W> FairQueue<K, W> {
    pub(super) fn new() -> Self {
        Self {
            queues: FastMap::default(),
            order: VecDeque::new(),
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues `w` behind the other waiters of `key`; a key new to the queue is served after
    /// every key already waiting.
    pub(super) fn push(&mut self, key: K, w: W) {
        self.len += 1;
        match self.queues.get_mut(&key) {
            Some(q) => q.push_back(w),
            None => {
                self.order.push_back(key.clone());
                self.queues.insert(key, VecDeque::from([w]));
            }
        }
    }

    /// The key served next, if any.
    pub(super) fn next_key(&self) -> Option<&K> {
        self.order.front()
    }

    /// Takes a waiter (the one `choose` picks, see [`Choice`]) of the first key, in
    /// round-robin order, that `eligible` accepts; that key then goes to the back of the
    /// order. Keys passed over keep their place.
    pub(super) fn pop(
        &mut self,
        mut eligible: impl FnMut(&K) -> bool,
        choose: impl FnMut(&W, &W) -> Choice,
    ) -> Option<(K, W)> {
        let i = self.order.iter().position(&mut eligible)?;
        let key = self.order.remove(i)?;
        let w = self.take_chosen(&key, choose)?;
        Some((key, w))
    }

    /// Takes a waiter of `key` (the one `choose` picks), which then goes to the back of the
    /// order.
    pub(super) fn pop_key<Q>(&mut self, key: &Q, choose: impl FnMut(&W, &W) -> Choice) -> Option<W>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let i = self.order.iter().position(|k| k.borrow() == key)?;
        let key = self.order.remove(i)?;
        self.take_chosen(&key, choose)
    }

    /// `key` is out of the order: takes the waiter `choose` picks and puts the key back at the
    /// end if more remain.
    fn take_chosen(&mut self, key: &K, mut choose: impl FnMut(&W, &W) -> Choice) -> Option<W> {
        let q = self.queues.get_mut(key)?;
        let mut at = 0;
        if let Some(front) = q.front() {
            for (i, w) in q.iter().enumerate() {
                match choose(front, w) {
                    Choice::Take => {
                        at = i;
                        break;
                    }
                    Choice::Skip => {}
                    Choice::Stop => break,
                }
            }
        }
        let w = q.remove(at);
        if q.is_empty() {
            self.queues.remove(key);
        } else {
            self.order.push_back(key.clone());
        }
        if w.is_some() {
            self.len -= 1;
        }
        w
    }

    /// Removes the first waiter of `key` that `pred` matches (a waiter that gave up).
    pub(super) fn remove<Q>(&mut self, key: &Q, pred: impl FnMut(&W) -> bool) -> Option<W>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let q = self.queues.get_mut(key)?;
        let i = q.iter().position(pred)?;
        let w = q.remove(i)?;
        self.len -= 1;
        if q.is_empty() {
            self.queues.remove(key);
            self.order.retain(|k| k.borrow() != key);
        }
        Some(w)
    }

    /// The oldest waiter of `key`, if it has any.
    pub(super) fn front<Q>(&self, key: &Q) -> Option<&W>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.queues.get(key)?.front()
    }

    /// The oldest waiter of every key.
    pub(super) fn fronts(&self) -> impl Iterator<Item = &W> {
        self.queues.values().filter_map(|q| q.front())
    }

    /// Every waiter, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &W> {
        self.queues.values().flatten()
    }

    /// Removes and returns every waiter `gone` matches; the others keep their places.
    pub(super) fn remove_all(&mut self, mut gone: impl FnMut(&W) -> bool) -> Vec<W> {
        let mut out = Vec::new();
        for q in self.queues.values_mut() {
            let mut i = 0;
            while i < q.len() {
                if gone(&q[i]) {
                    out.extend(q.remove(i));
                } else {
                    i += 1;
                }
            }
        }
        if !out.is_empty() {
            self.len -= out.len();
            self.queues.retain(|_, q| !q.is_empty());
            let queues = &self.queues;
            self.order.retain(|k| queues.contains_key(k));
        }
        out
    }

    /// Empties the queue.
    pub(super) fn drain(&mut self) -> Vec<W> {
        self.order.clear();
        self.len = 0;
        self.queues.drain().flat_map(|(_, q)| q).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Choice, FairQueue, oldest};

    fn served(q: &mut FairQueue<&'static str, u32>) -> Vec<(&'static str, u32)> {
        std::iter::from_fn(|| q.pop(|_| true, oldest)).collect()
    }

    #[test]
    fn keys_take_turns_and_each_key_is_fifo() {
        let mut q = FairQueue::new();
        for i in 0..5 {
            q.push("busy", i);
        }
        q.push("lone", 100);
        q.push("other", 200);
        q.push("lone", 101);
        assert_eq!(q.len(), 8);
        assert_eq!(
            served(&mut q),
            [
                ("busy", 0),
                ("lone", 100),
                ("other", 200),
                ("busy", 1),
                ("lone", 101),
                ("busy", 2),
                ("busy", 3),
                ("busy", 4)
            ]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn a_late_key_waits_for_at_most_one_turn_of_each_other_key() {
        let mut q = FairQueue::new();
        for i in 0..200 {
            q.push("busy", i);
        }
        assert_eq!(q.pop(|_| true, oldest), Some(("busy", 0)));
        q.push("lone", 0);
        assert_eq!(q.pop(|_| true, oldest), Some(("busy", 1)));
        assert_eq!(q.pop(|_| true, oldest), Some(("lone", 0)));
    }

    #[test]
    fn ineligible_keys_keep_their_place() {
        let mut q = FairQueue::new();
        q.push("capped", 1);
        q.push("capped", 2);
        q.push("free", 10);
        q.push("free", 11);
        assert_eq!(q.pop(|k| *k != "capped", oldest), Some(("free", 10)));
        assert_eq!(q.pop(|k| *k != "capped", oldest), Some(("free", 11)));
        assert_eq!(q.pop(|k| *k != "capped", oldest), None);
        assert_eq!(q.next_key(), Some(&"capped"));
        assert_eq!(q.pop(|_| true, oldest), Some(("capped", 1)));
    }

    #[test]
    fn remove_all_keeps_the_others_in_order() {
        let mut q = FairQueue::new();
        for (k, w) in [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)] {
            q.push(k, w);
        }
        let mut gone = q.remove_all(|w| w % 2 == 0);
        gone.sort();
        assert_eq!(gone, [2, 4]);
        assert_eq!(q.len(), 3);
        let mut all: Vec<u32> = q.iter().copied().collect();
        all.sort();
        assert_eq!(all, [1, 3, 5]);
        // "c" has no waiters left and is out of the order; "a" and "b" keep their turns.
        assert_eq!(served(&mut q), [("a", 1), ("b", 5), ("a", 3)]);
        assert!(q.is_empty());
    }

    #[test]
    fn removed_waiters_leave_no_trace() {
        let mut q = FairQueue::new();
        q.push("a", 1);
        q.push("b", 2);
        q.push("a", 3);
        assert_eq!(q.remove("a", |w| *w == 3), Some(3));
        assert_eq!(q.remove("a", |w| *w == 3), None);
        assert_eq!(q.remove("b", |w| *w == 2), Some(2));
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_key(), Some(&"a"));
        assert_eq!(q.pop_key("a", oldest), Some(1));
        assert!(q.is_empty() && q.next_key().is_none());
        q.push("c", 4);
        assert_eq!(q.fronts().count(), 1);
        assert_eq!(q.drain(), [4]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_chosen_waiter_goes_first_and_the_others_keep_their_places() {
        let mut q = FairQueue::new();
        for w in [1, 2, 3, 4, 5] {
            q.push("a", w);
        }
        // The first even waiter within 3 of the oldest.
        let even_near = |front: &u32, w: &u32| match (*w - *front > 3, w.is_multiple_of(2)) {
            (true, _) => Choice::Stop,
            (false, true) => Choice::Take,
            (false, false) => Choice::Skip,
        };
        assert_eq!(q.pop(|_| true, even_near), Some(("a", 2)));
        assert_eq!(q.pop_key("a", even_near), Some(4));
        // 1 is the oldest now, and the next even one (none) is out of reach: the oldest.
        assert_eq!(q.pop(|_| true, even_near), Some(("a", 1)));
        assert_eq!(
            q.pop(|_| true, |_: &u32, _: &u32| Choice::Stop),
            Some(("a", 3))
        );
        assert_eq!(
            q.pop(|_| true, |_: &u32, _: &u32| Choice::Skip),
            Some(("a", 5))
        );
        assert!(q.is_empty());
    }
}
