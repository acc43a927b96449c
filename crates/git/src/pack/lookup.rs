//! Reading objects by id: the id -> entry table of a pack, and a reader that rebuilds objects through a cache of
//! recently rebuilt ones.

use std::collections::HashMap;
use std::rc::Rc;

use super::{MAX_CHAIN, NONE, Pack, PackError, Scratch, bad};
use crate::oid::{IdMap, ObjectId};

impl Pack {
    /// The entry holding object `id`.
    pub(super) fn find(&self, id: &ObjectId) -> Option<u32> {
        let by_id = self.by_id.get_or_init(|| {
            let mut map = IdMap::with_capacity_and_hasher(self.objs.len(), Default::default());
            for (i, o) in self.objs.iter().enumerate() {
                map.insert(o.id, i as u32);
            }
            map
        });
        by_id.get(id).copied()
    }
}

/// A rebuilt object and when it was last used.
type Cached = (Rc<Vec<u8>>, u64);

/// Reads objects by id from packs, keeping recently rebuilt objects (deltas included) in a cache bounded in bytes.
///
/// A history walk reads trees oldest first, while packs store the newest version whole and older ones as deltas
/// below it: each read walks a chain of deltas up to something cached. libgit2 caches only the whole objects at
/// the chain tops, so it re-applies the whole chain for every version; caching every rebuilt version makes the
/// next older one a single delta away.
pub(crate) struct ObjectReader<'a> {
    packs: &'a [Pack],
    scratch: Scratch,
    /// (pack, entry) -> (bytes, last use); `order` holds uses oldest first (stale ones skipped on eviction).
    cache: HashMap<(u32, u32), Cached>,
    order: std::collections::VecDeque<((u32, u32), u64)>,
    bytes: usize,
    budget: usize,
    clock: u64,
}

impl<'a> ObjectReader<'a> {
    pub(crate) fn new(packs: &'a [Pack], budget: usize) -> Result<ObjectReader<'a>, PackError> {
        Ok(ObjectReader {
            packs,
            scratch: Scratch::new()?,
            cache: HashMap::new(),
            order: std::collections::VecDeque::new(),
            bytes: 0,
            budget,
            clock: 0,
        })
    }

    /// The bytes of object `id`, or `None` when no pack holds it whole or as a delta within the pack.
    pub(crate) fn read(&mut self, id: &ObjectId) -> Result<Option<Rc<Vec<u8>>>, PackError> {
        match self.locate(id) {
            Some((p, i)) => self.read_at(p, i, id),
            None => Ok(None),
        }
    }

    /// Entry `i` of pack `p` (object `id`), rebuilt through the cache; `None` for a delta whose base is elsewhere.
    fn read_at(&mut self, p: u32, i: u32, id: &ObjectId) -> Result<Option<Rc<Vec<u8>>>, PackError> {
        let pack = &self.packs[p as usize];
        // Up the chain to a cached or whole object.
        let mut chain = Vec::new();
        let mut at = i;
        let mut data: Rc<Vec<u8>> = loop {
            if let Some(hit) = self.touch((p, at)) {
                break hit;
            }
            let o = &pack.objs[at as usize];
            if o.orphan {
                return Ok(None);
            }
            if o.base == NONE {
                let mut whole = Vec::new();
                self.scratch.inflate(pack, at, &mut whole)?;
                let whole = Rc::new(whole);
                self.insert((p, at), whole.clone());
                break whole;
            }
            chain.push(at);
            // git writes chains at most 4095 deep; a longer one loops (ids can name any entry as a base).
            if chain.len() > MAX_CHAIN {
                return Err(bad(format!("the delta chain of {} does not end", id)).in_file(&pack.path));
            }
            at = o.base;
        };
        // And back down, keeping every version rebuilt on the way.
        for &d in chain.iter().rev() {
            data = Rc::new(self.scratch.rebuild(pack, d, &data)?);
            self.insert((p, d), data.clone());
        }
        Ok(Some(data))
    }

    /// Object `id`'s bytes into `out`, without keeping them in the cache when a pack holds it whole (commits, read
    /// once each); false when no pack holds it.
    pub(crate) fn read_into(&mut self, id: &ObjectId, out: &mut Vec<u8>) -> Result<bool, PackError> {
        let Some((p, i)) = self.locate(id) else {
            return Ok(false);
        };
        let pack = &self.packs[p as usize];
        let o = &pack.objs[i as usize];
        if o.base == NONE && !o.orphan {
            self.scratch.inflate(pack, i, out)?;
            return Ok(true);
        }
        let Some(data) = self.read_at(p, i, id)? else {
            return Ok(false);
        };
        out.clear();
        out.extend_from_slice(&data);
        Ok(true)
    }

    /// The pack and entry holding object `id`.
    fn locate(&self, id: &ObjectId) -> Option<(u32, u32)> {
        self.packs
            .iter()
            .enumerate()
            .find_map(|(p, pack)| pack.find(id).map(|i| (p as u32, i)))
    }

    fn touch(&mut self, key: (u32, u32)) -> Option<Rc<Vec<u8>>> {
        self.clock += 1;
        let clock = self.clock;
        let (data, used) = self.cache.get_mut(&key)?;
        *used = clock;
        let data = data.clone();
        self.order.push_back((key, clock));
        Some(data)
    }

    fn insert(&mut self, key: (u32, u32), data: Rc<Vec<u8>>) {
        self.clock += 1;
        self.bytes += data.len();
        if let Some((old, _)) = self.cache.insert(key, (data, self.clock)) {
            self.bytes -= old.len();
        }
        self.order.push_back((key, self.clock));
        while self.bytes > self.budget {
            let Some((key, used)) = self.order.pop_front() else {
                break;
            };
            if self.cache.get(&key).is_some_and(|(_, u)| *u == used)
                && let Some((old, _)) = self.cache.remove(&key)
            {
                self.bytes -= old.len();
            }
        }
        // Uses of entries touched often pile up in `order`: drop the stale ones now and then.
        if self.order.len() > 4 * self.cache.len() + 1024 {
            let cache = &self.cache;
            self.order
                .retain(|(k, u)| cache.get(k).is_some_and(|(_, used)| used == u));
        }
    }
}
