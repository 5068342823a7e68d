//! What a key holds, and what it costs: a string, a list or a set.
//!
//! Redis's commands are typed: `INCR` on a list is `WRONGTYPE`, `MGET` of
//! a set answers nil. Strings are what this server is for; lists and sets
//! are here in their smallest useful form (push, pop, range; add, remove,
//! members) so that the type rules, and the tests Redis's own suite runs
//! about them, are real.
//!
//! Every value knows what it costs in memory ([`Value::cost`]), in `O(1)`:
//! a list or set keeps the running total of its elements' bytes, so the
//! keyspace's count (`Db::memory`) never walks a collection. The costs
//! count what the allocator hands out, not what the data says: a string's
//! capacity, not its length; a table's slots, empty ones too.
//!
//! `OBJECT ENCODING` is answered from the value and how it was made, as
//! Redis 7.0 answers it: a string stored as sent is `int` when it reads as
//! a 64-bit integer, `embstr` up to 44 bytes, else `raw`; one edited in
//! place (`APPEND`, `SETRANGE`, `SETBIT`) is `raw`; `INCRBYFLOAT`'s result
//! is never `int`. Lists are `quicklist`; sets of integers are `intset` up
//! to 512 members, others `hashtable`.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::number::redis_int;

/// What the allocator adds to each heap block: glibc's chunk header and
/// rounding to 16 bytes, for the small blocks keys and values mostly are.
pub const ALLOC_OVERHEAD: usize = 16;

/// Redis 7.0 keeps a string of up to 44 bytes in one block with its
/// header (`OBJ_ENCODING_EMBSTR_SIZE_LIMIT`); `OBJECT ENCODING` says so.
const EMBSTR_LIMIT: usize = 44;

/// Redis 7.0's `set-max-intset-entries` default: a set of integers is an
/// `intset` up to this many members.
const INTSET_LIMIT: usize = 512;

/// A key's value.
pub enum Value {
    Str(Str),
    /// Boxed, like `Set`: most values are strings, and a table slot is as
    /// large as its largest variant.
    List(Box<List>),
    Set(Box<Set>),
}

/// A string and how it was made (for `OBJECT ENCODING`).
pub struct Str {
    pub bytes: Vec<u8>,
    pub made: Made,
}

/// How a string value came to be, which is all `OBJECT ENCODING` needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Made {
    /// Stored as a client sent it (`SET`, `MSET`, `APPEND` to nothing):
    /// Redis tries the integer encoding.
    Sent,
    /// Written by `INCRBYFLOAT`: Redis makes a plain string object.
    Float,
    /// Edited in place (`APPEND`, `SETRANGE`, `SETBIT`): Redis's `raw`.
    Edited,
}

impl Value {
    /// A string stored as a client sent it.
    pub fn sent(bytes: Vec<u8>) -> Value {
        Value::Str(Str {
            bytes,
            made: Made::Sent,
        })
    }

    /// The name `TYPE` answers with.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
        }
    }

    /// The name `OBJECT ENCODING` answers with (see the module docs).
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Str(s) => match s.made {
                Made::Edited => "raw",
                Made::Sent if s.bytes.len() <= 20 && redis_int(&s.bytes).is_some() => "int",
                _ if s.bytes.len() <= EMBSTR_LIMIT => "embstr",
                _ => "raw",
            },
            Value::List(_) => "quicklist",
            Value::Set(set) => {
                let small = set.len() <= INTSET_LIMIT;
                if small && set.items.iter().all(|m| redis_int(m).is_some()) {
                    "intset"
                } else {
                    "hashtable"
                }
            }
        }
    }

    /// Bytes this value holds on the heap, allocator overhead included;
    /// `O(1)`.
    pub fn cost(&self) -> usize {
        match self {
            Value::Str(s) => heap(s.bytes.capacity()),
            Value::List(list) => {
                let slots = list.items.capacity() * std::mem::size_of::<Vec<u8>>();
                heap(std::mem::size_of::<List>()) + heap(slots) + list.bytes
            }
            Value::Set(set) => {
                heap(std::mem::size_of::<Set>()) + set_table_bytes(&set.items) + set.bytes
            }
        }
    }
}

/// A heap block of `n` bytes as the allocator sees it (none for nothing).
pub const fn heap(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        n + ALLOC_OVERHEAD
    }
}

/// The memory a hash table's slots take: hashbrown keeps a power of two
/// of buckets, at most 7/8 full, each an entry plus one control byte
/// (`capacity` is the 7/8).
pub fn table_bytes<K, V>(map: &HashMap<K, V>) -> usize {
    buckets(map.capacity()) * (std::mem::size_of::<(K, V)>() + 1)
}

/// [`table_bytes`] for a set.
fn set_table_bytes<T>(set: &HashSet<T>) -> usize {
    buckets(set.capacity()) * (std::mem::size_of::<T>() + 1)
}

/// The buckets behind a hashbrown table of `capacity` (7/8 of them).
fn buckets(capacity: usize) -> usize {
    capacity / 7 * 8
}

/// A list of strings, with the running total of its elements' heap bytes.
#[derive(Default)]
pub struct List {
    items: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl List {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn push(&mut self, item: &[u8], front: bool) {
        self.bytes += heap(item.len());
        if front {
            self.items.push_front(item.to_vec());
        } else {
            self.items.push_back(item.to_vec());
        }
    }

    pub fn pop(&mut self, front: bool) -> Option<Vec<u8>> {
        let item = if front {
            self.items.pop_front()
        } else {
            self.items.pop_back()
        }?;
        self.bytes -= heap(item.capacity());
        Some(item)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Vec<u8>> {
        self.items.iter()
    }
}

/// A set of strings, with the running total of its members' heap bytes.
#[derive(Default)]
pub struct Set {
    items: HashSet<Vec<u8>>,
    bytes: usize,
}

impl Set {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// `true` if `member` was not there.
    pub fn insert(&mut self, member: &[u8]) -> bool {
        if self.items.contains(member) {
            return false;
        }
        self.bytes += heap(member.len());
        self.items.insert(member.to_vec())
    }

    /// `true` if `member` was there.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.items.take(member) {
            Some(m) => {
                self.bytes -= heap(m.capacity());
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.items.contains(member)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.items.iter()
    }
}
