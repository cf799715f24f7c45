//! Checking `maintenance` and `inhibit`: every matcher (a regex that does not compile is
//! pointed at), every schedule and duration, every `equal` label name.

use indexmap::IndexMap;

use super::Builder;
use crate::config::mute::{InhibitSpec, MaintenanceSpec, Matcher, MuteSpec};
use crate::config::raw::{InhibitConfig, MaintenanceConfig, Text};
use crate::scheduler::schedule::Schedule;

impl Builder<'_> {
    pub(super) fn mute(
        &mut self,
        maintenance: &[MaintenanceConfig],
        inhibit: &[InhibitConfig],
    ) -> MuteSpec {
        let mut spec = MuteSpec::default();
        let mut names = std::collections::HashSet::new();
        for (i, window) in maintenance.iter().enumerate() {
            let field = format!("maintenance[{i}]");
            let name = self.string(&window.name, &format!("{field}.name"));
            let schedule = self.string(&window.schedule, &format!("{field}.schedule"));
            let schedule = schedule.and_then(|text| match Schedule::parse(&text) {
                Ok(Schedule::Every(_)) => {
                    self.error(
                        &window.schedule.referenced,
                        &format!("{field}.schedule"),
                        "a maintenance window opens on a cron schedule (`0 2 * * *`), not `@every`",
                    );
                    None
                }
                Ok(schedule) => Some(schedule),
                Err(e) => {
                    self.error(
                        &window.schedule.referenced,
                        &format!("{field}.schedule"),
                        e.reason,
                    );
                    None
                }
            });
            // A window of no length never opens, and one without a name cannot be told apart
            // from another in the alert log and the report: both are slips, said here.
            let name = name.filter(|name| {
                let taken = !names.insert(name.clone());
                if name.trim().is_empty() || taken {
                    let why = if taken {
                        format!("a second maintenance window named `{name}`: give each its own name")
                    } else {
                        "a maintenance window needs a name (it is what the alert log and the report show)".to_string()
                    };
                    self.error(&window.name.referenced, &format!("{field}.name"), why);
                }
                !name.trim().is_empty() && !taken
            });
            let duration = self
                .duration(&window.duration, &format!("{field}.duration"))
                .filter(|duration| {
                    if duration.is_zero() {
                        self.error(
                            &window.duration.referenced,
                            &format!("{field}.duration"),
                            "a maintenance window of no length never opens: give it a duration (`1h`)",
                        );
                    }
                    !duration.is_zero()
                });
            let matchers = self.matchers(&window.matchers, &format!("{field}.match"));
            if let (Some(name), Some(schedule), Some(duration), Some(matchers)) =
                (name, schedule, duration, matchers)
            {
                spec.maintenance.push(MaintenanceSpec {
                    name,
                    schedule,
                    duration,
                    matchers,
                });
            }
        }
        for (i, rule) in inhibit.iter().enumerate() {
            let field = format!("inhibit[{i}]");
            let source = self.matchers(&rule.source_match, &format!("{field}.source_match"));
            let target = self.matchers(&rule.target_match, &format!("{field}.target_match"));
            let equal: Vec<String> = rule
                .equal
                .iter()
                .filter_map(|label| self.string(label, &format!("{field}.equal")))
                .collect();
            if let (Some(source), Some(target)) = (source, target) {
                spec.inhibit.push(InhibitSpec {
                    source,
                    target,
                    equal,
                });
            }
        }
        spec
    }

    /// A `match` mapping's matchers; `None` when one of them is wrong (each said).
    fn matchers(&mut self, entries: &IndexMap<Text, Text>, field: &str) -> Option<Vec<Matcher>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (name, value) in entries {
            let entry_field = format!("{field}.{}", name.value);
            let Some(text) = self.string(value, &entry_field) else {
                ok = false;
                continue;
            };
            match Matcher::from_entry(&name.value, &text) {
                Ok(matcher) => out.push(matcher),
                Err(message) => {
                    self.error(&value.referenced, &entry_field, message);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}
