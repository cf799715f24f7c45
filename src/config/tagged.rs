//! Config kinds chosen by a `type` key (`type: monitor`, `type: ping`), deserialized so that
//! errors inside keep their exact line, column and field path.
//!
//! serde's `#[serde(tag = "type")]` buffers the whole mapping before choosing the variant, which
//! loses every position inside it (errors point at the mapping's first line). Reading `type` as
//! the first key and handing the rest of the same mapping to the variant's struct keeps the
//! YAML deserializer, and its positions, all the way down. The price is that `type` comes first,
//! which every example and shipped file does anyway; the error says so when it does not.

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
                        let first: Option<String> = map.next_key()?;
                        match first.as_deref() {
                            Some("type") => {}
                            Some(other) => return Err(A::Error::custom(format!(
                                "`type` must be the first key of a {} (found `{}` first); move the `type:` line up",
                                $noun, other
                            ))),
                            None => return Err(A::Error::missing_field("type")),
                        }
                        let tag: String = map.next_value()?;
                        let rest = serde::de::value::MapAccessDeserializer::new(map);
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
        serde_saphyr::from_str(yaml).map_err(|e| {
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
    fn type_must_come_first() {
        let err = parse("- host: a\n  type: ping\n").unwrap_err();
        assert!(err.contains("`type` must be the first key"), "{err}");
    }
}
