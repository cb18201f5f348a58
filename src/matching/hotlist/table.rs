//! The open-addressing table behind each hotlist shard: SwissTable-style control bytes, but
//! with a slot's address computable from the hash alone, so a batch of lookups can prefetch
//! (see the parent module's doc for why).

/// Slots per probe group: one `u64` of control bytes, tested all at once.
pub(super) const GROUP: usize = 8;
/// Control byte of a slot never used since the last resize; a probe stops at a group with one.
const EMPTY: u8 = 0xFF;
/// Control byte of a slot whose key was removed from a full group (a tombstone).
const DELETED: u8 = 0x80;
const LOW_BITS: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// An open-addressing hash table from `u64` keys to values, in the style of SwissTable
/// (`hashbrown`) but built so a lookup's memory can be requested before it is needed:
/// the control group a probe starts at is `ctrl[hash & mask]` and the slot a hit is at is
/// `slots[index of the matching control byte]`, both computable without touching anything
/// else, and the value lives in the slot. See the module doc for why.
///
/// Slots are grouped by [`GROUP`]; a full slot's control byte is the top 7 bits of its hash.
/// A probe visits groups `g, g+1, g+3, g+6, …` (triangular, so it reaches every group) and
/// stops after the first group holding an [`EMPTY`] slot. The caller supplies the hash, so one
/// table serves plates (placed by canonical key, several plates per placement) and persons.
/// At most 7/8 of the slots are ever non-empty, so every probe ends.
#[derive(Clone)]
pub(super) struct Table<V> {
    /// Control bytes, [`GROUP`] per word (slot `g * GROUP + b` is byte `b`, little-endian).
    ctrl: Vec<u64>,
    /// A full slot has `Some` value; others `None`.
    pub(super) slots: Vec<Slot<V>>,
    pub(super) items: usize,
    /// How many more [`EMPTY`] slots may be filled before the table must grow.
    pub(super) growth_left: usize,
}

#[derive(Clone)]
pub(super) struct Slot<V> {
    key: u64,
    value: Option<V>,
}

impl<V> Table<V> {
    /// A table for `items` keys without growing (at least one group).
    pub(super) fn with_capacity(items: usize) -> Self {
        let slots = (items * 8).div_ceil(7).next_power_of_two().max(GROUP);
        Table {
            ctrl: vec![u64::from_ne_bytes([EMPTY; GROUP]); slots / GROUP],
            slots: (0..slots)
                .map(|_| Slot {
                    key: 0,
                    value: None,
                })
                .collect(),
            items: 0,
            growth_left: slots / 8 * 7,
        }
    }

    /// The group a probe for `hash` starts at.
    pub(super) fn home(&self, hash: u64) -> usize {
        hash as usize & (self.ctrl.len() - 1)
    }

    /// Calls `visit(slot index)` for the slots on `hash`'s probe sequence whose control byte
    /// is the hash's tag, in probe order, until `visit` returns `Some` or the sequence ends.
    #[inline]
    pub(super) fn probe_slots<R>(
        &self,
        hash: u64,
        mut visit: impl FnMut(usize) -> Option<R>,
    ) -> Option<R> {
        let tag = tag_of(hash);
        let (mut g, mut stride) = (self.home(hash), 0);
        loop {
            let group = self.ctrl[g];
            let mut hits = match_byte(group, tag);
            while hits != 0 {
                let b = hits.trailing_zeros() as usize / 8;
                hits &= hits - 1;
                // The bit trick can flag a byte above a true match; the byte check skips it.
                if byte(group, b) == tag
                    && let Some(found) = visit(g * GROUP + b)
                {
                    return Some(found);
                }
            }
            if match_empty(group) != 0 {
                return None;
            }
            stride += 1;
            g = (g + stride) & (self.ctrl.len() - 1);
        }
    }

    /// Calls `visit(key, value)` for the full slots on `hash`'s probe sequence whose control
    /// byte matches, in probe order, until `visit` returns `Some` or the sequence ends.
    #[inline]
    pub(super) fn probe<'a, R>(
        &'a self,
        hash: u64,
        mut visit: impl FnMut(u64, &'a V) -> Option<R>,
    ) -> Option<R> {
        self.probe_slots(hash, |at| {
            let slot = &self.slots[at];
            visit(slot.key, slot.value.as_ref()?)
        })
    }

    /// Index of the slot holding `key`.
    pub(super) fn find(&self, hash: u64, key: u64) -> Option<usize> {
        self.probe_slots(hash, |at| (self.slots[at].key == key).then_some(at))
    }

    pub(super) fn get(&self, hash: u64, key: u64) -> Option<&V> {
        self.probe(hash, |k, value| (k == key).then_some(value))
    }

    /// The first empty or deleted slot on `hash`'s probe sequence: where a new key goes. A
    /// lookup reaches it, since it is no later than the first group with an empty slot.
    pub(super) fn free_slot(&self, hash: u64) -> usize {
        let (mut g, mut stride) = (self.home(hash), 0);
        loop {
            let free = self.ctrl[g] & HIGH_BITS; // EMPTY and DELETED have the top bit set
            if free != 0 {
                return g * GROUP + free.trailing_zeros() as usize / 8;
            }
            stride += 1;
            g = (g + stride) & (self.ctrl.len() - 1);
        }
    }

    /// Puts `value` under `key`, returning the value it replaced. `rehash` gives a stored
    /// key's hash, for when the table has to grow.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        key: u64,
        value: V,
        rehash: impl Fn(u64) -> u64,
    ) -> Option<V> {
        if let Some(at) = self.find(hash, key) {
            return self.slots[at].value.replace(value);
        }
        let mut at = self.free_slot(hash);
        if self.growth_left == 0 && self.ctrl_byte(at) == EMPTY {
            self.grow(rehash);
            at = self.free_slot(hash);
        }
        self.fill(at, hash, key, value);
        None
    }

    pub(super) fn fill(&mut self, at: usize, hash: u64, key: u64, value: V) {
        self.growth_left -= usize::from(self.ctrl_byte(at) == EMPTY);
        self.set_ctrl(at, tag_of(hash));
        self.slots[at] = Slot {
            key,
            value: Some(value),
        };
        self.items += 1;
    }

    /// Moves everything into a table with room for one more key (the same size again when
    /// tombstones took the room, which clears them).
    pub(super) fn grow(&mut self, rehash: impl Fn(u64) -> u64) {
        let mut bigger = Table::with_capacity(self.items + 1);
        for slot in std::mem::take(&mut self.slots) {
            if let Some(value) = slot.value {
                let hash = rehash(slot.key);
                bigger.fill(bigger.free_slot(hash), hash, slot.key, value);
            }
        }
        *self = bigger;
    }

    pub(super) fn remove(&mut self, hash: u64, key: u64) -> Option<V> {
        let at = self.find(hash, key)?;
        // A probe stops at a group with an empty slot, so no probe went past this group and
        // the slot may become empty again; otherwise leave a tombstone.
        if match_empty(self.ctrl[at / GROUP]) != 0 {
            self.set_ctrl(at, EMPTY);
            self.growth_left += 1;
        } else {
            self.set_ctrl(at, DELETED);
        }
        self.items -= 1;
        self.slots[at].key = 0;
        self.slots[at].value.take()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.slots
            .iter()
            .filter_map(|slot| Some((slot.key, slot.value.as_ref()?)))
    }

    pub(super) fn ctrl_byte(&self, at: usize) -> u8 {
        byte(self.ctrl[at / GROUP], at % GROUP)
    }

    pub(super) fn set_ctrl(&mut self, at: usize, tag: u8) {
        let shift = 8 * (at % GROUP);
        let word = &mut self.ctrl[at / GROUP];
        *word = (*word & !(0xFF << shift)) | (u64::from(tag) << shift);
    }

    /// Starts loading the control group a probe for `hash` begins with.
    #[inline]
    pub(super) fn prefetch_ctrl(&self, hash: u64) {
        prefetch(&raw const self.ctrl[self.home(hash)]);
    }

    /// Starts loading the slot of the first matching control byte on `hash`'s probe sequence
    /// (where a hit nearly always is). Reads the control bytes: prefetch those first.
    #[inline]
    pub(super) fn prefetch_slot(&self, hash: u64) {
        self.probe_slots(hash, |at| {
            let slot = &raw const self.slots[at];
            // A slot may straddle two cache lines.
            prefetch(slot);
            prefetch(slot.cast::<u8>().wrapping_add(size_of::<Slot<V>>() - 1));
            Some(())
        });
    }
}

/// Control byte of a full slot: the hash's top 7 bits (top bit clear, unlike EMPTY/DELETED).
fn tag_of(hash: u64) -> u8 {
    (hash >> 57) as u8
}

fn byte(group: u64, b: usize) -> u8 {
    (group >> (8 * b)) as u8
}

/// Top bit of each byte of `group` that equals `tag`, plus possibly bytes above a true match.
fn match_byte(group: u64, tag: u8) -> u64 {
    let x = group ^ (LOW_BITS * u64::from(tag));
    x.wrapping_sub(LOW_BITS) & !x & HIGH_BITS
}

/// Top bit of each [`EMPTY`] byte (`0b11xx_xxxx`: only EMPTY has both top bits set).
fn match_empty(group: u64) -> u64 {
    group & (group << 1) & HIGH_BITS
}

/// Asks the CPU to start loading the cache line at `p`; a hint with no effect on results (and
/// nothing on other architectures).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` never faults and has no effect visible to the program, whatever
    // the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
