//! Config kinds chosen by a `type` key (`type: monitor`, `type: ping`), deserialized so that
//! errors inside keep their exact line, column and field path.
//!
//! serde's `#[serde(tag = "type")]` buffers the whole mapping before choosing the variant, which
//! loses every position inside it (errors point at the mapping's first line). Here the variant's
//! struct reads the rest of the same mapping from the YAML deserializer, keeping its positions.
//! When `type` comes first (as in every shipped file) that is all. When it does not (files
//! written by tools that sort keys: Helm's `toYaml`, PyYAML, Ansible), a scan of the document's
//! events before parsing (`super::scan`) has noted, for each such mapping, the position of its first
//! key and its `type`; the visitor finds its tag by that position, hands the first key back to
//! the variant's struct and skips the later `type` entry, so positions stay exact there too.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::de::{DeserializeSeed, IgnoredAny, IntoDeserializer, MapAccess};

/// `(line, column)` of a mapping's first key (both 1-based, as `Spanned` reports them) → the
/// value of the mapping's later `type` key.
pub type LateTags = HashMap<(u64, u64), String>;

thread_local! {
    static LATE_TAGS: RefCell<LateTags> = RefCell::new(HashMap::new());
}

/// Runs `parse` with `tags` (from `scan` of the same text) available to tagged configs.
pub fn with_late_tags<R>(tags: &LateTags, parse: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            LATE_TAGS.with(|t| t.borrow_mut().clear());
        }
    }
    let _reset = Reset;
    LATE_TAGS.with(|t| *t.borrow_mut() = tags.clone());
    parse()
}

/// The `type` of the mapping whose first key is at `line`, `column`, if the scan found one.
pub fn late_tag(line: u64, column: u64) -> Option<String> {
    LATE_TAGS.with(|t| t.borrow().get(&(line, column)).cloned())
}

/// One entry of one tagged mapping, whatever the pass: the `(line, column)` of the mapping's
/// first key, and the entry's key. (Keys are read as plain strings, not with their position,
/// so the field path of an error keeps their names.)
pub type KeyAt = (u64, u64, String);

thread_local! {
    /// Entries of tagged mappings a pass skips, by their key's position: each failed in an
    /// earlier pass, and was reported then.
    static BROKEN_KEYS: RefCell<std::collections::HashSet<KeyAt>> = RefCell::new(Default::default());
    /// The innermost entry whose key or value failed in the current pass, if one did.
    static FAILED_KEY: RefCell<Option<KeyAt>> = const { RefCell::new(None) };
    /// List items the current pass skipped: the key of the entry holding the list, and the
    /// item's `(line, column)`.
    static SKIPPED_ITEMS: RefCell<Vec<SkippedItem>> = const { RefCell::new(Vec::new()) };
}

/// A list item a pass skipped (it failed in an earlier one): the key of the entry whose value
/// the list is (`probes`), and the item's `(line, column)`. The items after it keep their
/// index in what is reported at build time by counting these.
pub type SkippedItem = (String, (u64, u64));

/// Runs `parse` skipping the entries at `broken`, and says which entry failed, if one did.
///
/// A serde error ends the whole parse, so the problem in one field of a job would hide every
/// other field's (a bad `expect_status` hid the job's schedule, its other probes and its
/// names). The loader parses again with the failed entry skipped, as if it were not written,
/// so the job's other settings are read and checked; each pass finds one more problem.
///
/// Also says which list items the pass skipped (see `SkippedItem`).
pub fn with_broken_keys<R>(
    broken: &std::collections::HashSet<KeyAt>,
    parse: impl FnOnce() -> R,
) -> (R, Option<KeyAt>, Vec<SkippedItem>) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            BROKEN_KEYS.with(|b| b.borrow_mut().clear());
            FAILED_KEY.with(|f| f.borrow_mut().take());
            SKIPPED_ITEMS.with(|s| s.borrow_mut().clear());
        }
    }
    let _reset = Reset;
    BROKEN_KEYS.with(|b| *b.borrow_mut() = broken.clone());
    FAILED_KEY.with(|f| f.borrow_mut().take());
    SKIPPED_ITEMS.with(|s| s.borrow_mut().clear());
    let result = parse();
    (
        result,
        FAILED_KEY.with(|f| f.borrow_mut().take()),
        SKIPPED_ITEMS.with(|s| std::mem::take(&mut *s.borrow_mut())),
    )
}

fn is_broken(at: &KeyAt) -> bool {
    BROKEN_KEYS.with(|b| b.borrow().contains(at))
}

/// Notes the entry at `at` as failed, unless one inside it failed first (the error passes
/// through every enclosing entry on its way out; the innermost is the one to skip).
fn note_failed(at: KeyAt) {
    FAILED_KEY.with(|f| {
        f.borrow_mut().get_or_insert(at);
    });
}

/// The rest of a mapping after its tag, read from the same deserializer.
pub struct AfterTag<A> {
    pub state: AfterTagState,
    pub rest: A,
    /// `(line, column)` of the mapping's first key, which names its entries.
    pub mapping: (u64, u64),
    /// The entry whose value is read next, to note it if the value fails.
    pub current: Option<KeyAt>,
}

pub enum AfterTagState {
    /// `type` came first: the rest is the variant's, as it is.
    Direct,
    /// `type` comes later: give back this first key (read already) before the others.
    FirstKey(String),
    /// `type` comes later and the first key was given back: skip `type` when it comes.
    SkipType,
}

/// A map key that is either one to skip (the late `type`, or an entry that failed in an
/// earlier pass; the seed comes back for the next key) or one the variant's struct reads.
/// Reading the key through this seed keeps an error in it (an unknown field) inside the
/// deserializer's own key handling, so its position and path are kept.
enum Key<K, V> {
    Skip(K),
    Other(V, KeyAt),
}

struct KeySeed<K> {
    seed: K,
    skip_type: bool,
    mapping: (u64, u64),
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<K> {
    type Value = Key<K, K::Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let key = <String as serde::Deserialize>::deserialize(d)?;
        if self.skip_type && key == "type" {
            return Ok(Key::Skip(self.seed));
        }
        let at = (self.mapping.0, self.mapping.1, key);
        if is_broken(&at) {
            return Ok(Key::Skip(self.seed));
        }
        self.seed
            .deserialize(at.2.clone().into_deserializer())
            .map(|value| Key::Other(value, at.clone()))
            .inspect_err(|_| note_failed(at))
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for AfterTag<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let skip_type = match std::mem::replace(&mut self.state, AfterTagState::SkipType) {
            AfterTagState::Direct => {
                self.state = AfterTagState::Direct;
                false
            }
            AfterTagState::FirstKey(first) => {
                let at = (self.mapping.0, self.mapping.1, first);
                if !is_broken(&at) {
                    let result = seed.deserialize(at.2.clone().into_deserializer());
                    if result.is_err() {
                        note_failed(at);
                    } else {
                        self.current = Some(at);
                    }
                    return result.map(Some);
                }
                // The first key failed in an earlier pass: skip its value, read on.
                self.rest.next_value::<IgnoredAny>()?;
                true
            }
            AfterTagState::SkipType => true,
        };
        let mut seed = seed;
        loop {
            let key = KeySeed {
                seed,
                skip_type,
                mapping: self.mapping,
            };
            match self.rest.next_key_seed(key)? {
                None => return Ok(None),
                Some(Key::Other(value, at)) => {
                    self.current = Some(at);
                    return Ok(Some(value));
                }
                Some(Key::Skip(back)) => {
                    self.rest.next_value::<IgnoredAny>()?;
                    seed = back;
                }
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        let Some(current) = self.current.take() else {
            return self.rest.next_value_seed(seed);
        };
        // A list value's items are skippable one by one (see `Wrap`), named by this entry.
        let seed = Wrap {
            inner: seed,
            mode: Mode::Items(current.clone()),
        };
        self.rest
            .next_value_seed(seed)
            .inspect_err(|_| note_failed(current))
    }
}

/// The mapping a `KeyAt` names for the top level of the file: no key is at line 0.
const TOP_LEVEL: (u64, u64) = (0, 0);

/// Whether `at` is an entry of the file's top level (`listen_auth`, `jobs`, ...).
pub fn is_top_level(at: &KeyAt) -> bool {
    (at.0, at.1) == TOP_LEVEL
}

/// Deserializes the file's top-level struct with its entries skippable as a tagged mapping's
/// are: a `listen_auth` serde cannot read is reported and skipped in the next pass, rather than
/// ending the load before any job is read.
pub fn with_skippable_entries<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    T::deserialize(Wrap {
        inner: deserializer,
        mode: Mode::Top,
    })
}

/// The `KeyAt` naming item `index` of the list that is the value of entry `owner`. No key has
/// `[` in it, so it names no entry.
fn item_at(owner: &KeyAt, index: usize) -> KeyAt {
    (owner.0, owner.1, format!("{}[{index}]", owner.2))
}

/// What a `Wrap` adds to what it wraps.
#[derive(Clone)]
enum Mode {
    /// The top-level mapping: its entries are read through an `AfterTag`, so each can fail
    /// and be skipped alone.
    Top,
    /// The value of this entry: if it is a list, an item that fails as a whole (a probe with
    /// an unknown `type` or a missing field) is skipped alone in the next pass, not the whole
    /// list, so the list's other items are still read and checked.
    Items(KeyAt),
}

/// A seed, deserializer or visitor that behaves as the one it wraps, but for what `mode` says.
/// (Wrapping at each of the three levels is how serde lets a caller see a value's list or
/// mapping while its type, unknown here, reads it.)
struct Wrap<T> {
    inner: T,
    mode: Mode,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<S> {
    type Value = S::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Wrap {
            inner: d,
            mode: self.mode,
        })
    }
}

/// Forwards `deserialize_*` methods to the wrapped deserializer, with the visitor wrapped.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: serde::de::Visitor<'de>>(
                self,
                $($arg: $ty,)*
                visitor: V,
            ) -> Result<V::Value, D::Error> {
                self.inner.$method($($arg,)* Wrap { inner: visitor, mode: self.mode })
            }
        )*
    };
}

impl<'de, D: serde::Deserializer<'de>> serde::Deserializer<'de> for Wrap<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Forwards `visit_*` methods that take a plain value to the wrapped visitor.
macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: serde::de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: serde::de::Visitor<'de>> serde::de::Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        // `Option<Vec<_>>`: the list is inside.
        match self.mode {
            Mode::Items(_) => self.inner.visit_some(Wrap {
                inner: d,
                mode: self.mode,
            }),
            Mode::Top => self.inner.visit_some(d),
        }
    }

    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        match self.mode {
            Mode::Items(owner) => self.inner.visit_seq(SkipItems {
                seq,
                owner,
                index: 0,
            }),
            Mode::Top => self.inner.visit_seq(seq),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        match self.mode {
            Mode::Top => self.inner.visit_map(AfterTag {
                state: AfterTagState::Direct,
                rest: map,
                mapping: TOP_LEVEL,
                current: None,
            }),
            Mode::Items(_) => self.inner.visit_map(map),
        }
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(data)
    }
}

/// A list whose items that failed in an earlier pass are skipped (their index still counts, so
/// later items keep their place in error paths), and whose item that fails now is noted.
struct SkipItems<A> {
    seq: A,
    owner: KeyAt,
    index: usize,
}

impl<'de, A: serde::de::SeqAccess<'de>> serde::de::SeqAccess<'de> for SkipItems<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        loop {
            let at = item_at(&self.owner, self.index);
            self.index += 1;
            if !is_broken(&at) {
                // A setting inside the item that failed was noted first and is the one to skip.
                return self
                    .seq
                    .next_element_seed(seed)
                    .inspect_err(|_| note_failed(at));
            }
            // Read for its position only, which keeps the indices of the items after it.
            match self
                .seq
                .next_element::<serde_saphyr::Spanned<IgnoredAny>>()?
            {
                None => return Ok(None),
                Some(item) => {
                    let place = (item.referenced.line(), item.referenced.column());
                    SKIPPED_ITEMS.with(|s| s.borrow_mut().push((self.owner.2.clone(), place)));
                }
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

/// Defines an enum whose variants wrap config structs and are picked by the `type` key.
///
/// ```ignore
/// tagged_config! {
///     /// A probe.
///     pub enum ProbeConfig: "probe type" {
///         "cpu" => Cpu(CpuProbe),
///     }
/// }
/// ```
macro_rules! tagged_config {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $noun:literal {
            $( $(#[$vmeta:meta])* $tag:literal => $variant:ident($ty:ty), )+
        }
    ) => {
        $(#[$meta])*
        // Read once at load time: boxing the big variants would buy nothing.
        #[allow(clippy::large_enum_variant)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant($ty), )+
        }

        impl $name {
            /// Every accepted value of `type`, in the order the docs list them.
            pub const TYPES: &'static [&'static str] = &[$($tag),+];

            /// The `type` this value was read from.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $tag, )+
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct TagVisitor;
                impl<'de> serde::de::Visitor<'de> for TagVisitor {
                    type Value = $name;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "a mapping that starts with `type:` (a {})", $noun)
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        use serde::de::Error as _;
                        let first: Option<serde_saphyr::Spanned<String>> = map.next_key()?;
                        let Some(first) = first else {
                            return Err(A::Error::missing_field("type"));
                        };
                        use $crate::config::tagged::{AfterTag, AfterTagState, late_tag};
                        let (tag, state) = if first.value == "type" {
                            (map.next_value::<String>()?, AfterTagState::Direct)
                        } else {
                            // `type` comes later: the scan before parsing knows its value.
                            let at = &first.referenced;
                            match late_tag(at.line(), at.column()) {
                                Some(tag) => (tag, AfterTagState::FirstKey(first.value.clone())),
                                None => return Err(A::Error::missing_field("type")),
                            }
                        };
                        let mapping = (first.referenced.line(), first.referenced.column());
                        let rest = AfterTag { state, rest: map, mapping, current: None };
                        let rest = serde::de::value::MapAccessDeserializer::new(rest);
                        match tag.as_str() {
                            $( $tag => <$ty as serde::Deserialize>::deserialize(rest).map($name::$variant), )+
                            other => Err(A::Error::custom(format!(
                                "unknown {} `{}` (expected one of: {})",
                                $noun, other, $name::TYPES.join(", ")
                            ))),
                        }
                    }
                }
                deserializer.deserialize_map(TagVisitor)
            }
        }
    };
}

pub(crate) use tagged_config;

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Ping {
        host: String,
        count: Option<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cpu {}

    tagged_config! {
        #[derive(Debug, PartialEq)]
        enum Probe: "probe type" {
            "cpu" => Cpu(Cpu),
            "ping" => Ping(Ping),
        }
    }

    fn parse(yaml: &str) -> Result<Vec<Probe>, String> {
        let tags = crate::config::scan::scan(yaml).late_tags;
        super::with_late_tags(&tags, || serde_saphyr::from_str(yaml)).map_err(|e| {
            let loc = e.location().expect("location");
            format!("{}:{} {}", loc.line(), loc.column(), e.without_snippet())
        })
    }

    #[test]
    fn picks_the_variant_by_type() {
        assert_eq!(
            parse("- type: cpu\n- {type: ping, host: a, count: 2}\n"),
            Ok(vec![
                Probe::Cpu(Cpu {}),
                Probe::Ping(Ping {
                    host: "a".into(),
                    count: Some(2)
                })
            ])
        );
        assert_eq!(Probe::TYPES, &["cpu", "ping"]);
        assert_eq!(Probe::Cpu(Cpu {}).type_name(), "cpu");
    }

    #[test]
    fn errors_inside_keep_their_position() {
        let err = parse("- type: ping\n  host: a\n  count: many\n").unwrap_err();
        assert!(err.starts_with("3:10 "), "{err}");
        let err = parse("- type: ping\n  host: a\n  bogus: 1\n").unwrap_err();
        assert!(err.starts_with("3:3 unknown field `bogus`"), "{err}");
    }

    #[test]
    fn unknown_type_lists_the_known_ones() {
        let err = parse("- type: cpx\n").unwrap_err();
        assert!(
            err.contains("unknown probe type `cpx` (expected one of: cpu, ping)"),
            "{err}"
        );
    }

    #[test]
    fn type_may_come_anywhere_and_positions_stay_exact() {
        // As a tool that sorts keys writes it: `type` last, in block and flow mappings.
        assert_eq!(
            parse("- count: 2\n  host: a\n  type: ping\n- {host: b, type: ping}\n- type: cpu\n"),
            Ok(vec![
                Probe::Ping(Ping {
                    host: "a".into(),
                    count: Some(2)
                }),
                Probe::Ping(Ping {
                    host: "b".into(),
                    count: None
                }),
                Probe::Cpu(Cpu {}),
            ])
        );
        let err = parse("- count: many\n  host: a\n  type: ping\n").unwrap_err();
        assert!(err.starts_with("1:10 "), "{err}");
        let err = parse("- host: a\n  bogus: 1\n  type: ping\n").unwrap_err();
        assert!(err.starts_with("2:3 unknown field `bogus`"), "{err}");
        let err = parse("- bogus: 1\n  host: a\n  type: ping\n").unwrap_err();
        assert!(err.contains("unknown field `bogus`"), "{err}");
        assert!(err.starts_with("1:"), "{err}");
        let err = parse("- host: a\n  type: pong\n").unwrap_err();
        assert!(err.contains("unknown probe type `pong`"), "{err}");
        let err = parse("- host: a\n").unwrap_err();
        assert!(err.contains("missing field `type`"), "{err}");
    }

    #[test]
    fn the_scan_finds_late_types_by_first_key() {
        let tags = crate::config::scan::scan(
            "a:\n  b: 1\n  type: x\nc: [{d: 1, type: y}, {type: z, e: 1}]\nf: {g: {type: w}, type: v}\n",
        )
        .late_tags;
        let mut found: Vec<((u64, u64), String)> = tags.into_iter().collect();
        found.sort();
        assert_eq!(
            found,
            [
                ((2, 3), "x".to_string()),
                ((4, 6), "y".to_string()),
                ((5, 5), "v".to_string())
            ]
        );
    }
}
