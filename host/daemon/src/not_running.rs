//! Stored things (pipelines, actors) that could not start after a restart,
//! kept by name with why: their calls then answer 503 saying so, they are
//! listed, and every upload tries them again (it may be what they missed).

use std::collections::HashMap;
use std::future::Future;
use std::sync::RwLock;

/// Names that could not start, each with what its owner keeps of it (`T`)
/// and the reason.
#[derive(Debug)]
pub(crate) struct NotRunning<T> {
    entries: RwLock<HashMap<String, (T, String)>>,
    /// Held while they are tried again (one try at a time).
    retrying: tokio::sync::Mutex<()>,
}

impl<T> Default for NotRunning<T> {
    fn default() -> Self {
        Self {
            entries: RwLock::default(),
            retrying: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T: Clone> NotRunning<T> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, (T, String)>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, (T, String)>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `name` could not start, and why.
    pub(crate) fn insert(&self, name: String, kept: T, why: String) {
        self.write().insert(name, (kept, why));
    }

    /// Forgets `name` (started, replaced or deleted).
    pub(crate) fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    /// Whether nothing is waiting to start.
    pub(crate) fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Why `name` is not running, if it is one of them.
    pub(crate) fn why(&self, name: &str) -> Option<String> {
        self.read().get(name).map(|(_, why)| why.clone())
    }

    /// The first (name, why) whose kept value `matches`.
    pub(crate) fn find(&self, matches: impl Fn(&T) -> bool) -> Option<(String, String)> {
        self.read()
            .iter()
            .find(|(_, (kept, _))| matches(kept))
            .map(|(name, (_, why))| (name.clone(), why.clone()))
    }

    /// `each(name, kept, why)` for every entry, sorted.
    pub(crate) fn list<R: Ord>(&self, each: impl Fn(&str, &T, &str) -> R) -> Vec<R> {
        let mut v: Vec<R> = self
            .read()
            .iter()
            .map(|(name, (kept, why))| each(name, kept, why))
            .collect();
        v.sort();
        v
    }

    /// Calls `start(name, kept)` for each entry still here when its turn
    /// comes (one retry at a time); `start` removes those that start, or
    /// inserts them again with the new reason.
    pub(crate) async fn retry<F, Fut>(&self, start: F)
    where
        F: Fn(String, T) -> Fut,
        Fut: Future<Output = ()>,
    {
        let _turn = self.retrying.lock().await;
        let names: Vec<String> = self.read().keys().cloned().collect();
        for name in names {
            // Not applied again, or deleted, meanwhile.
            let kept = self.read().get(&name).map(|(kept, _)| kept.clone());
            if let Some(kept) = kept {
                start(name, kept).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_what_is_still_there_and_lists_sorted() {
        let table = NotRunning::<u32>::default();
        assert!(table.is_empty());
        table.insert("b".into(), 2, "no stage `x`".into());
        table.insert("a".into(), 1, "no model `m`".into());
        assert_eq!(table.why("b").as_deref(), Some("no stage `x`"));
        assert_eq!(
            table.find(|k| *k == 1),
            Some(("a".into(), "no model `m`".into()))
        );
        assert_eq!(
            table.list(|n, k, _| (n.to_string(), *k)),
            [("a".into(), 1), ("b".into(), 2)]
        );
        let tried = std::sync::Mutex::new(Vec::new());
        table
            .retry(|name, kept| {
                // The first to start takes the other out (deleted meanwhile).
                table.remove(&name);
                table.remove(if name == "a" { "b" } else { "a" });
                tried.lock().unwrap().push(kept);
                async {}
            })
            .await;
        assert_eq!(tried.into_inner().unwrap().len(), 1);
        assert!(table.is_empty() && table.why("a").is_none());
    }
}
