//! Checking `actions`: a name, a non-empty command, durations, a cap of at least 1, and `on`
//! of `firing` or `repeat`.

use indexmap::IndexMap;

use super::Builder;
use crate::config::action::{ActionSpec, DEFAULT_TIMEOUT, RunOn};
use crate::config::raw::{ActionConfig, Text};

impl Builder<'_> {
    pub(super) fn actions(
        &mut self,
        actions: &IndexMap<Text, ActionConfig>,
    ) -> IndexMap<String, ActionSpec> {
        let mut specs = IndexMap::new();
        for (name, action) in actions {
            let field = format!("actions.{}", name.value);
            if name.value.trim().is_empty() {
                self.error(&name.referenced, "actions", "an action needs a name");
                continue;
            }
            let mut ok = true;
            let mut argv = Vec::new();
            for (i, arg) in action.command.iter().enumerate() {
                match self.string(arg, &format!("{field}.command[{i}]")) {
                    Some(arg) => argv.push(arg),
                    None => ok = false,
                }
            }
            // `[""]` is no program either: it would fail at each run as `cannot run ```.
            if action.command.is_empty() || argv.first().is_some_and(|p| p.trim().is_empty()) {
                self.error(
                    &name.referenced,
                    &format!("{field}.command"),
                    "`command` must name a program: [\"systemctl\", \"restart\", \"nginx\"]",
                );
                ok = false;
            }
            let mut duration = |text: &Option<Text>, key: &str, default| match text {
                Some(text) => self.duration(text, &format!("{field}.{key}")),
                None => Some(default),
            };
            let timeout = duration(&action.timeout, "timeout", DEFAULT_TIMEOUT);
            let cooldown = duration(&action.cooldown, "cooldown", std::time::Duration::ZERO);
            if timeout.is_some_and(|t| t.is_zero())
                && let Some(text) = &action.timeout
            {
                self.error(
                    &text.referenced,
                    &format!("{field}.timeout"),
                    "`timeout` must be more than 0",
                );
                ok = false;
            }
            let max_per_hour = match &action.max_per_hour {
                Some(n) if n.value == 0 => {
                    self.error(
                        &n.referenced,
                        &format!("{field}.max_per_hour"),
                        "`max_per_hour` must be at least 1 (leave it out for no cap)",
                    );
                    ok = false;
                    None
                }
                Some(n) => Some(n.value),
                None => None,
            };
            let on = match &action.on {
                None => Some(RunOn::Firing),
                Some(text) => match text.value.as_str() {
                    "firing" => Some(RunOn::Firing),
                    "repeat" => Some(RunOn::Repeat),
                    other => {
                        self.error(
                            &text.referenced,
                            &format!("{field}.on"),
                            format!("`on` is `firing` or `repeat`, not `{other}`"),
                        );
                        None
                    }
                },
            };
            if let (true, Some(timeout), Some(cooldown), Some(on)) = (ok, timeout, cooldown, on) {
                specs.insert(
                    name.value.clone(),
                    ActionSpec {
                        argv,
                        timeout,
                        cooldown,
                        max_per_hour,
                        on,
                    },
                );
            }
        }
        specs
    }
}
