//! What a rule sees of the current sample: `cpu.total.usage_percent`, `memory.used_percent`,
//! `ping.gateway.loss_percent`. Each family a job's probes can produce is a variable in scope
//! even when this tick lacks it; a missing instance or field reads as `()`.
//!
//! Families are custom Rhai types whose property access falls back to a string indexer, so
//! `disk.data.used_percent` on a host without `/data` is `()`, not an error. The `Schema` is
//! what `runner check` holds rule scripts against, so typos are load-time errors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rhai::{Dynamic, ImmutableString};

use super::context;
use crate::config::probes::{Instances, PROBE_TYPES, ProbeSpec};

/// Numbered instances (`core0`...) given a getter of their own; higher ones still work, through
/// the slower indexer.
const NUMBERED_INSTANCES: usize = 64;

/// The metric names one family can have.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FamilySchema {
    /// `memory.used_percent` has no instance level; `disk.root.used_percent` has.
    pub flat: bool,
    /// Known instances; `None` when they are discovered at run time (mounts, cores, devices).
    pub instances: Option<BTreeSet<String>>,
    /// Known fields; `None` when the probe's output decides (`command`).
    pub fields: Option<BTreeSet<String>>,
    /// Fields of parts found at run time inside an instance (`postgres.main.<db>.<field>`),
    /// read by full name (`value("postgres.main.shop.commits_per_sec")`).
    pub nested_fields: BTreeSet<String>,
}

/// Every family a monitor job's probes can produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    pub families: BTreeMap<String, FamilySchema>,
}

impl Schema {
    /// The families a job's probes produce, from each probe type's description.
    pub fn for_probes(specs: &[ProbeSpec]) -> Schema {
        let mut schema = Schema::default();
        for spec in specs {
            let described = spec.kind.describe();
            let family = schema
                .families
                .entry(described.name.to_string())
                .or_insert_with(|| FamilySchema {
                    flat: matches!(described.instances, Instances::None),
                    instances: match described.instances {
                        Instances::Named => Some(BTreeSet::new()),
                        Instances::None | Instances::Discovered { .. } => None,
                    },
                    fields: (!described.open_fields).then(BTreeSet::new),
                    nested_fields: described
                        .nested_fields
                        .iter()
                        .map(|f| f.name.to_string())
                        .collect(),
                });
            if let (Some(instances), Some(name)) = (&mut family.instances, &spec.name) {
                instances.insert(name.clone());
            }
            if let Some(fields) = &mut family.fields {
                fields.extend(spec.fields());
            }
        }
        schema
    }

    /// Every instance and field name a rule may write after a dot: known instances, the
    /// instance names every host has (`total`, `root`, cores), and every known field.
    pub fn property_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (family, schema) in &self.families {
            names.extend(schema.instances.iter().flatten().cloned());
            names.extend(schema.fields.iter().flatten().cloned());
            let described = PROBE_TYPES.iter().find(|t| t.name == family);
            if let Some(Instances::Discovered {
                well_known,
                numbered,
            }) = described.map(|t| &t.instances)
            {
                names.extend(well_known.iter().map(|n| n.to_string()));
                if let Some(prefix) = numbered {
                    names.extend((0..NUMBERED_INSTANCES).map(|i| format!("{prefix}{i}")));
                }
            }
        }
        names
    }

    /// Checks `family[.instance].field` parts as a rule wrote them; the error says what exists.
    pub fn check_parts(&self, parts: &[&str]) -> Result<(), String> {
        let Some((family, rest)) = parts.split_first() else {
            return Ok(());
        };
        let Some(schema) = self.families.get(*family) else {
            return Err(format!(
                "this job collects no `{family}` metrics (it has: {})",
                self.families.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        };
        let field = if schema.flat {
            rest.first()
        } else {
            if let (Some(instance), Some(known)) = (rest.first(), &schema.instances)
                && !known.contains(*instance)
            {
                return Err(format!(
                    "no `{family}` probe is named `{instance}` in this job (named: {})",
                    known.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            rest.get(1)
        };
        if let (Some(field), Some(known)) = (field, &schema.fields)
            && !known.contains(*field)
        {
            let prefix = if schema.flat {
                family.to_string()
            } else {
                format!("{family}.<instance>")
            };
            return Err(format!(
                "`{prefix}` has no field `{field}` (fields: {})",
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(())
    }

    /// Checks a full metric name written as a string (`"cpu.total.usage_percent"`).
    pub fn check_name(&self, name: &str) -> Result<(), String> {
        let parts: Vec<&str> = name.split('.').collect();
        let depth = match self.families.get(parts[0]) {
            Some(f) if f.flat => 2,
            Some(f) if parts.len() == 4 && !f.nested_fields.is_empty() => {
                self.check_parts(&parts[..2])?;
                if !f.nested_fields.contains(parts[3]) {
                    return Err(format!(
                        "`{}.<instance>.<part>` has no field `{}` (fields: {})",
                        parts[0],
                        parts[3],
                        f.nested_fields
                            .iter()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                return Ok(());
            }
            Some(_) => 3,
            None => return self.check_parts(&parts),
        };
        if parts.len() != depth {
            return Err(format!(
                "`{name}` is not a metric name: `{}` names have {depth} parts ({})",
                parts[0],
                if depth == 2 {
                    "family.field"
                } else {
                    "family.instance.field"
                }
            ));
        }
        self.check_parts(&parts)
    }
}

/// FNV-1a: metric parts are short strings looked up on every property access, where SipHash's
/// protection against crafted keys buys nothing (the keys are our own) and costs the most.
#[derive(Default, Clone, Copy)]
pub struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// One instance's fields (or a flat family's), shared with the nodes rules hold.
type Fields = Arc<FastMap<String, f64>>;

/// The current sample's values, arranged for property access.
#[derive(Debug, Default)]
pub struct Values {
    flat: FastMap<String, Fields>,
    nested: FastMap<String, FastMap<String, Fields>>,
    all: FastMap<String, f64>,
    /// Text probes reported this tick, by name (`postgres.main.lock_head_blocker`).
    notes: FastMap<String, String>,
}

impl Values {
    pub fn new<'a>(schema: &Schema, metrics: impl IntoIterator<Item = (&'a str, f64)>) -> Values {
        let mut flat: FastMap<String, FastMap<String, f64>> = FastMap::default();
        let mut nested: FastMap<String, FastMap<String, FastMap<String, f64>>> = FastMap::default();
        let mut all = FastMap::default();
        for (name, value) in metrics {
            all.insert(name.to_string(), value);
            let mut parts = name.splitn(3, '.');
            let (Some(family), Some(second)) = (parts.next(), parts.next()) else {
                continue;
            };
            match (schema.families.get(family), parts.next()) {
                (Some(f), None) if f.flat => {
                    flat.entry(family.to_string())
                        .or_default()
                        .insert(second.to_string(), value);
                }
                (Some(f), Some(field)) if !f.flat => {
                    nested
                        .entry(family.to_string())
                        .or_default()
                        .entry(second.to_string())
                        .or_default()
                        .insert(field.to_string(), value);
                }
                _ => {}
            }
        }
        Values {
            flat: flat.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            nested: nested
                .into_iter()
                .map(|(k, m)| (k, m.into_iter().map(|(i, v)| (i, Arc::new(v))).collect()))
                .collect(),
            all,
            notes: FastMap::default(),
        }
    }

    /// The same values with the tick's notes; a name that comes twice keeps its first text.
    pub fn with_notes<'a>(mut self, notes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Values {
        for (name, text) in notes {
            self.notes
                .entry(name.to_string())
                .or_insert_with(|| text.to_string());
        }
        self
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.all.get(name).copied()
    }

    pub fn note(&self, name: &str) -> Option<&str> {
        self.notes.get(name).map(String::as_str)
    }

    /// Instances of a family present in this sample, sorted.
    pub fn instances(&self, family: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .nested
            .get(family)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// The parts found inside one instance this sample (`shop` and `public~~orders` of
    /// `postgres.main.<part>.<field>`), sorted.
    pub fn parts(&self, family: &str, instance: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .nested
            .get(family)
            .and_then(|m| m.get(instance))
            .map(|fields| {
                fields
                    .keys()
                    .filter_map(|f| f.rsplit_once('.').map(|(part, _)| part.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out.dedup();
        out
    }
}

/// A family variable in a rule's scope (`cpu`, `memory`).
#[derive(Debug, Clone)]
pub struct FamilyNode {
    pub values: Arc<Values>,
    pub family: ImmutableString,
    pub flat: bool,
}

/// `disk.root`: one instance of a family, with its fields looked up once.
#[derive(Debug, Clone)]
pub struct InstanceNode {
    fields: Option<Fields>,
    family: ImmutableString,
    instance: ImmutableString,
}

fn leaf(value: Option<f64>, name: impl FnOnce() -> String) -> Dynamic {
    match value {
        Some(v) => Dynamic::from_float(v),
        None => {
            context::note_missing(name());
            Dynamic::UNIT
        }
    }
}

impl FamilyNode {
    pub fn property(&mut self, name: ImmutableString) -> Dynamic {
        if self.flat {
            let value = self
                .values
                .flat
                .get(self.family.as_str())
                .and_then(|m| m.get(name.as_str()))
                .copied();
            leaf(value, || format!("{}.{name}", self.family))
        } else {
            let fields = self
                .values
                .nested
                .get(self.family.as_str())
                .and_then(|m| m.get(name.as_str()))
                .cloned();
            Dynamic::from(InstanceNode {
                fields,
                family: self.family.clone(),
                instance: name,
            })
        }
    }
}

impl InstanceNode {
    pub fn property(&mut self, field: ImmutableString) -> Dynamic {
        let value = self
            .fields
            .as_ref()
            .and_then(|m| m.get(field.as_str()))
            .copied();
        leaf(value, || {
            format!("{}.{}.{field}", self.family, self.instance)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::probes::{CpuSpec, DiskSpec, MemorySpec, PingSpec, ProbeKind};

    fn schema() -> Schema {
        Schema::for_probes(&[
            ProbeSpec::new(None, ProbeKind::Cpu(CpuSpec { per_core: true })),
            ProbeSpec::new(None, ProbeKind::Memory(MemorySpec)),
            ProbeSpec::new(None, ProbeKind::Disk(DiskSpec { mounts: None })),
            ProbeSpec::new(
                Some("gateway"),
                ProbeKind::Ping(PingSpec {
                    host: "x".into(),
                    count: 1,
                    interval: std::time::Duration::from_millis(100),
                }),
            ),
        ])
    }

    #[test]
    fn checks_names_against_what_the_job_collects() {
        let s = schema();
        assert_eq!(s.check_name("cpu.total.usage_percent"), Ok(()));
        assert_eq!(s.check_name("disk.anything.used_percent"), Ok(()));
        assert_eq!(s.check_name("memory.used_percent"), Ok(()));
        assert_eq!(s.check_name("ping.gateway.loss_percent"), Ok(()));
        assert_eq!(
            s.check_name("cpu.total.usage"),
            Err("`cpu.<instance>` has no field `usage` (fields: idle_seconds_total, iowait_percent, iowait_seconds_total, irq_seconds_total, nice_seconds_total, softirq_seconds_total, some_avg10_percent, steal_percent, steal_seconds_total, system_percent, system_seconds_total, usage_percent, user_percent, user_seconds_total)".into())
        );
        assert_eq!(
            s.check_name("ping.gw.loss_percent"),
            Err("no `ping` probe is named `gw` in this job (named: gateway)".into())
        );
        assert_eq!(
            s.check_name("http.app.up"),
            Err("this job collects no `http` metrics (it has: cpu, disk, memory, ping)".into())
        );
        assert!(
            s.check_name("memory.used_percent.x")
                .unwrap_err()
                .contains("2 parts")
        );
    }

    #[test]
    fn values_are_arranged_by_family() {
        let s = schema();
        let v = Values::new(
            &s,
            [
                ("cpu.total.usage_percent", 12.5),
                ("memory.used_percent", 40.0),
                ("disk.root.used_percent", 61.0),
                ("disk.var.used_percent", 20.0),
            ],
        );
        assert_eq!(v.get("memory.used_percent"), Some(40.0));
        assert_eq!(v.instances("disk"), ["root", "var"]);
        let mut disk = FamilyNode {
            values: Arc::new(v),
            family: "disk".into(),
            flat: false,
        };
        let mut root = disk.property("root".into()).cast::<InstanceNode>();
        assert_eq!(root.property("used_percent".into()).as_float(), Ok(61.0));
        assert!(root.property("free_bytes".into()).is_unit());
    }
}
