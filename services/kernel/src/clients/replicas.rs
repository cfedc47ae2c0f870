//! The replicas of one service a client calls: each attempt takes the next one in turn,
//! so calls spread over them and a retry after UNAVAILABLE reaches another replica.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The endpoints of a `clients.*` setting: one address, or replicas separated by commas
/// (`http://10.0.0.1:50051, http://10.0.0.2:50051`); blanks around each are ignored and
/// empty items dropped.
pub fn endpoint_list(setting: &str) -> impl Iterator<Item = &str> {
    setting
        .split(',')
        .map(str::trim)
        .filter(|one| !one.is_empty())
}

/// One client per replica, handed out in turn. Clones share the turn.
#[derive(Debug)]
pub struct Replicas<T> {
    each: Arc<[T]>,
    turn: Arc<AtomicUsize>,
}

impl<T> Clone for Replicas<T> {
    fn clone(&self) -> Self {
        Self {
            each: Arc::clone(&self.each),
            turn: Arc::clone(&self.turn),
        }
    }
}

impl<T: Clone> Replicas<T> {
    /// `None` when there is no replica. The first turn depends on the process, so that
    /// the instances of a caller do not all start on the same replica.
    pub fn new(each: Vec<T>) -> Option<Self> {
        if each.is_empty() {
            return None;
        }
        let first = std::process::id() as usize % each.len();
        Some(Self {
            each: each.into(),
            turn: Arc::new(AtomicUsize::new(first)),
        })
    }

    /// The client of the next replica.
    pub fn next(&self) -> T {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        self.each[turn % self.each.len()].clone()
    }

    /// How many replicas there are.
    pub fn len(&self) -> usize {
        self.each.len()
    }

    /// Never true: there is at least one replica.
    pub fn is_empty(&self) -> bool {
        self.each.is_empty()
    }

    /// The same replicas, each client wrapped (a typed client over each channel).
    pub fn map<U: Clone>(&self, wrap: impl FnMut(T) -> U) -> Replicas<U> {
        Replicas {
            each: self.each.iter().cloned().map(wrap).collect(),
            turn: Arc::new(AtomicUsize::new(self.turn.load(Ordering::Relaxed))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_lists_one_or_several_endpoints() {
        let one: Vec<&str> = endpoint_list("http://127.0.0.1:50051").collect();
        assert_eq!(one, ["http://127.0.0.1:50051"]);
        let two: Vec<&str> = endpoint_list(" http://127.0.0.1:1 ,http://127.0.0.1:2,, ").collect();
        assert_eq!(two, ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        assert_eq!(endpoint_list(" , ").count(), 0);
    }

    #[test]
    fn turns_go_round_every_replica_and_clones_share_them() {
        let replicas = Replicas::new(vec!['a', 'b', 'c']).expect("three replicas");
        let clone = replicas.clone();
        let mut seen: Vec<char> = (0..6)
            .map(|i| {
                if i % 2 == 0 {
                    replicas.next()
                } else {
                    clone.next()
                }
            })
            .collect();
        // Six turns over three replicas: each twice, consecutive turns on different ones.
        for pair in seen.windows(2) {
            assert_ne!(pair[0], pair[1], "{seen:?}");
        }
        seen.sort_unstable();
        assert_eq!(seen, ['a', 'a', 'b', 'b', 'c', 'c']);
        assert!(Replicas::<char>::new(Vec::new()).is_none());
    }

    #[test]
    fn a_mapped_set_keeps_every_replica_in_order() {
        let replicas = Replicas::new(vec![1, 2]).expect("two replicas");
        let mapped = replicas.map(|n| n * 10);
        assert_eq!(mapped.len(), 2);
        let mut seen = [mapped.next(), mapped.next()];
        seen.sort_unstable();
        assert_eq!(seen, [10, 20]);
    }
}
