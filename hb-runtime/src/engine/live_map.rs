//! The open activities by id, each table slot one pointer.
//!
//! A map from id to record would keep the id twice per activity (as the key, and in the
//! record, which needs it too) and a slot of three words; this table keys each boxed record by
//! its own `id`. Every heartbeat and timer looks an activity up here.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::core::Live;

#[derive(Default)]
pub(crate) struct LiveMap {
    table: HashTable<Box<Live>>,
    hasher: foldhash::fast::RandomState,
}

impl LiveMap {
    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Live> {
        self.table
            .find(self.hash(id), |l| &*l.id == id)
            .map(|l| &**l)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut Live> {
        let hash = self.hash(id);
        self.table
            .find_mut(hash, |l| &*l.id == id)
            .map(|l| &mut **l)
    }

    /// Adds `live`, replacing the record with its id if there is one.
    pub(crate) fn insert(&mut self, live: Box<Live>) {
        let hash = self.hash(&live.id);
        let hasher = &self.hasher;
        match self
            .table
            .entry(hash, |l| l.id == live.id, |l| hasher.hash_one(&*l.id))
        {
            hashbrown::hash_table::Entry::Occupied(mut e) => *e.get_mut() = live,
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(live);
            }
        }
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Box<Live>> {
        let hash = self.hash(id);
        match self.table.find_entry(hash, |l| &*l.id == id) {
            Ok(e) => Some(e.remove().0),
            Err(_) => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Live> {
        self.table.iter().map(|l| &**l)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Live> {
        self.table.iter_mut().map(|l| &mut **l)
    }
}
