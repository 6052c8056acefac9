//! Named actors: long-lived instances of a stage, each with a state space of
//! its own (state namespace `@<name>`).

use serde::{Deserialize, Serialize};

use crate::stages::{now_ms, validate_name_of};
use crate::{ACTORS, Result, STATE, Store, db};

/// A stored actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRecord {
    /// Actor name.
    pub name: String,
    /// The stage it runs.
    pub stage: String,
    /// The stage version it was created with.
    pub version: u32,
    /// Config given at creation, merged over the stage version's.
    pub config: Vec<(String, String)>,
    /// Creation time, ms since the Unix epoch.
    pub created_unix_ms: u64,
}

/// The state namespace of actor `name`.
pub fn actor_state_namespace(name: &str) -> String {
    format!("@{name}")
}

impl ActorRecord {
    /// A record stamped now.
    pub fn new(name: &str, stage: &str, version: u32, config: Vec<(String, String)>) -> Self {
        Self {
            name: name.to_string(),
            stage: stage.to_string(),
            version,
            config,
            created_unix_ms: now_ms(),
        }
    }
}

impl Store {
    /// Registers an actor; [`StoreError::Exists`](crate::StoreError::Exists) when the name is taken.
    pub fn put_actor(&self, rec: &ActorRecord) -> Result<()> {
        validate_name_of("actor name", &rec.name)?;
        let txn = self.write()?;
        Self::insert_new_named(&txn, ACTORS, "actor", &rec.name, rec)?;
        txn.commit().map_err(db)?;
        Ok(())
    }

    /// Every actor, by name.
    pub fn list_actors(&self) -> Result<Vec<ActorRecord>> {
        self.list_named(ACTORS, "actors")
    }

    /// Removes an actor and its state in one transaction; `true` when it
    /// existed.
    pub fn delete_actor(&self, name: &str) -> Result<bool> {
        let txn = self.write()?;
        let existed = txn
            .open_table(ACTORS)
            .map_err(db)?
            .remove(name)
            .map_err(db)?
            .is_some();
        if existed {
            let ns = actor_state_namespace(name);
            txn.open_table(STATE)
                .map_err(db)?
                .retain(|(owner, _), _| owner != ns)
                .map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;

    #[test]
    fn actors_own_their_state_and_take_it_with_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let rec = ActorRecord::new("chat-1", "count", 1, vec![]);
        store.put_actor(&rec).unwrap();
        assert!(matches!(
            store.put_actor(&rec).unwrap_err(),
            StoreError::Exists { .. }
        ));
        store.state_set("@chat-1", "k", b"v").unwrap();
        store.state_set("count", "k", b"stage's").unwrap();
        assert_eq!(store.list_actors().unwrap(), vec![rec]);
        assert!(store.delete_actor("chat-1").unwrap());
        assert!(!store.delete_actor("chat-1").unwrap());
        assert_eq!(store.state_get("@chat-1", "k").unwrap(), None);
        assert_eq!(store.state_get("count", "k").unwrap().unwrap(), b"stage's");
    }
}
