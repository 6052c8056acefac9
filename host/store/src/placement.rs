//! Placement groups: named sets of resource bundles reserved together. The
//! store keeps each group's spec (JSON written by the daemon) so that its
//! reservations are made again after a restart.

use serde::{Deserialize, Serialize};

use crate::stages::{now_ms, validate_name_of};
use crate::{PLACEMENT_GROUPS, Result, Store, db};

/// A stored placement group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementGroupRecord {
    /// Group name.
    pub name: String,
    /// Its spec as the daemon wrote it (JSON).
    pub spec: String,
    /// Creation time, ms since the Unix epoch.
    pub created_unix_ms: u64,
}

impl PlacementGroupRecord {
    /// A record stamped now.
    pub fn new(name: &str, spec: String) -> Self {
        Self {
            name: name.to_string(),
            spec,
            created_unix_ms: now_ms(),
        }
    }
}

impl Store {
    /// Registers a placement group; [`StoreError::Exists`](crate::StoreError::Exists) when the name is
    /// taken.
    pub fn put_placement_group(&self, rec: &PlacementGroupRecord) -> Result<()> {
        validate_name_of("placement group name", &rec.name)?;
        let txn = self.write()?;
        Self::insert_new_named(&txn, PLACEMENT_GROUPS, "placement group", &rec.name, rec)?;
        txn.commit().map_err(db)?;
        Ok(())
    }

    /// Every placement group, by name.
    pub fn list_placement_groups(&self) -> Result<Vec<PlacementGroupRecord>> {
        self.list_named(PLACEMENT_GROUPS, "placement_groups")
    }

    /// Removes a placement group; `true` when it existed.
    pub fn delete_placement_group(&self, name: &str) -> Result<bool> {
        self.remove_named(PLACEMENT_GROUPS, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;

    #[test]
    fn groups_are_named_once_listed_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        let rec = PlacementGroupRecord::new("train", "{}".into());
        store.put_placement_group(&rec).unwrap();
        assert!(matches!(
            store.put_placement_group(&rec),
            Err(StoreError::Exists { .. })
        ));
        assert_eq!(store.list_placement_groups().unwrap(), vec![rec]);
        assert!(store.delete_placement_group("train").unwrap());
        assert!(!store.delete_placement_group("train").unwrap());
        assert!(store.list_placement_groups().unwrap().is_empty());
        assert!(
            store
                .put_placement_group(&PlacementGroupRecord::new("bad name", "{}".into()))
                .is_err()
        );
    }
}
