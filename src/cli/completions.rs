//! `runner completions SHELL` and `runner man`: shell completions and the manual page, made
//! from the same argument definitions the command line is parsed with.
//!
//! clap_complete's scripts are static: they cannot know the job and notifier names of a jobs
//! file. Each script gets a small hook that asks
//! `runner __complete jobs|reports|monitors|notifiers` (hidden) for them, with the
//! `--jobs FILE` already typed on the line.

use std::fmt::Write as _;
use std::path::Path;

use clap::{Arg, ArgAction, CommandFactory};

use super::output::outln;
use super::{Cli, exit};

/// What `runner __complete` lists, one name a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Names {
    /// Every job (`run`, `dry-run`).
    Jobs,
    /// The report jobs (`report`).
    Reports,
    /// The monitor jobs (`replay`).
    Monitors,
    /// The notifiers of the file (`notify-test`).
    Notifiers,
}

/// The positionals that take a name from the jobs file: subcommand and what it takes.
const NAMED_POSITIONALS: &[(&str, Names)] = &[
    ("run", Names::Jobs),
    ("dry-run", Names::Jobs),
    ("report", Names::Reports),
    ("replay", Names::Monitors),
    ("notify-test", Names::Notifiers),
];

pub fn completions(shell: clap_complete::Shell) -> u8 {
    super::output::stdout_bytes(script(shell).as_bytes());
    exit::OK
}

/// The completion script for `shell`, with the name hook where the shell has one.
pub fn script(shell: clap_complete::Shell) -> String {
    let mut command = completable();
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut command, "runner", &mut text);
    let text = String::from_utf8_lossy(&text).into_owned();
    match shell {
        clap_complete::Shell::Bash => bash_hook(&text),
        clap_complete::Shell::Zsh => zsh_hook(&text),
        clap_complete::Shell::Fish => fish_hook(&text),
        _ => text,
    }
}

/// The command line without its hidden commands, which clap_complete would offer too.
fn completable() -> clap::Command {
    let full = Cli::command();
    clap::Command::new("runner")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// Every option spelling that takes a value (`--jobs`, `-o`…), anywhere on the command line:
/// the word after it is that value, not a command or a positional.
fn options_with_values() -> Vec<String> {
    let mut command = Cli::command();
    command.build();
    let mut spellings = std::collections::BTreeSet::new();
    let mut add = |arg: &Arg| {
        if arg.is_positional() || !arg.get_action().takes_values() {
            return;
        }
        if let Some(long) = arg.get_long() {
            spellings.insert(format!("--{long}"));
        }
        if let Some(short) = arg.get_short() {
            spellings.insert(format!("-{short}"));
        }
    };
    command.get_arguments().for_each(&mut add);
    for sub in command.get_subcommands() {
        sub.get_arguments().for_each(&mut add);
    }
    spellings.into_iter().collect()
}

/// The `case` patterns of the named positionals, grouped by what they take:
/// `run|dry-run) what=jobs ;;`.
fn bash_cases() -> String {
    let mut cases = String::new();
    for what in [
        Names::Jobs,
        Names::Reports,
        Names::Monitors,
        Names::Notifiers,
    ] {
        let commands: Vec<&str> = NAMED_POSITIONALS
            .iter()
            .filter(|(_, w)| *w == what)
            .map(|(c, _)| *c)
            .collect();
        let _ = writeln!(
            cases,
            "        {}) what={} ;;",
            commands.join("|"),
            names_word(what)
        );
    }
    cases
}

fn names_word(what: Names) -> &'static str {
    match what {
        Names::Jobs => "jobs",
        Names::Reports => "reports",
        Names::Monitors => "monitors",
        Names::Notifiers => "notifiers",
    }
}

/// Wraps clap's `_runner`: where the word being completed is the first positional of a command
/// that takes a job or notifier name, the names come from the jobs file; anywhere else clap's
/// function answers.
fn bash_hook(generated: &str) -> String {
    let hooked = generated.replace("complete -F _runner ", "complete -F _runner_names ");
    let mut hook = String::from(
        r#"
# Job and notifier names, read from the jobs file by `runner __complete` (the `--jobs FILE`
# typed on the line, else RUNNER_JOBS, else jobs/jobs.yaml).
_runner_names() {
    local i word command="" positional=0 value_next=0 value_of=""
    local -a jobs=()
    for (( i = 1; i < COMP_CWORD; i++ )); do
        word=${COMP_WORDS[i]}
        # `--jobs=FILE` is split at `=` by COMP_WORDBREAKS: the value is the word after it.
        [[ $word == "=" ]] && continue
        if (( value_next )); then
            value_next=0
            [[ $value_of == --jobs ]] && jobs=(--jobs "${word/#\~\//$HOME/}")
            continue
        fi
        case $word in
            --jobs=*) jobs=("$word") ;;
            OPTIONS_WITH_VALUES) value_next=1; value_of=$word ;;
            -*) ;;
            *)
                if [[ -z $command ]]; then
                    command=$word
                else
                    positional=$((positional + 1))
                fi
                ;;
        esac
    done
    local cur=${COMP_WORDS[COMP_CWORD]} what=""
    case $command in
CASES    esac
    if [[ -n $what && $positional -eq 0 && $value_next -eq 0 && $cur != -* ]]; then
        local self=${COMP_WORDS[0]/#\~\//$HOME/} names
        names=$("$self" "${jobs[@]}" __complete "$what" 2>/dev/null)
        COMPREPLY=( $(compgen -W "$names" -- "$cur") )
        return 0
    fi
    _runner "$@"
}
"#,
    );
    hook = hook
        .replace("OPTIONS_WITH_VALUES", &options_with_values().join("|"))
        .replace("CASES", &bash_cases());
    // The hook is defined before the `complete` lines that name it.
    match hooked.find("\nif [[ \"${BASH_VERSINFO[0]}\"") {
        Some(at) => format!("{}{hook}{}", &hooked[..at], &hooked[at..]),
        None => format!("{hooked}{hook}"),
    }
}

/// Gives the named positionals of zsh's `_arguments` specs the names of the jobs file instead
/// of `_default` (any word).
fn zsh_hook(generated: &str) -> String {
    let helper = r#"
# Job and notifier names, read from the jobs file by `runner __complete` (the `--jobs FILE`
# typed on the line, else RUNNER_JOBS, else jobs/jobs.yaml).
(( $+functions[_runner_names] )) ||
_runner_names() {
    local -a line_words jobs names
    local i
    line_words=(${(z)BUFFER})
    for (( i = 1; i <= $#line_words; i++ )); do
        case ${line_words[i]} in
            (--jobs) jobs=(--jobs ${(Q)line_words[i+1]}) ;;
            (--jobs=*) jobs=(${(Q)line_words[i]}) ;;
        esac
    done
    names=(${(f)"$(${(Q)line_words[1]} $jobs __complete $1 2>/dev/null)"})
    compadd -a names
}
"#;
    let mut out = String::with_capacity(generated.len() + helper.len());
    let mut command = "";
    for line in generated.lines() {
        let trimmed = line.trim();
        if let Some(label) = trimmed.strip_prefix('(').and_then(|l| l.strip_suffix(')')) {
            command = label;
        }
        let named = NAMED_POSITIONALS.iter().find(|(c, _)| *c == command);
        match named {
            Some((_, what))
                if (line.starts_with("':") || line.starts_with("'::"))
                    && line.ends_with(":_default' \\") =>
            {
                let head = &line[..line.len() - ":_default' \\".len()];
                let _ = writeln!(out, "{head}:_runner_names {}' \\", names_word(*what));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
        if line == "autoload -U is-at-least" {
            out.push_str(helper);
        }
    }
    out
}

/// Adds fish completions of the names to the commands that take them.
fn fish_hook(generated: &str) -> String {
    let mut out = String::from(generated);
    out.push_str(
        r#"
# Job and notifier names, read from the jobs file by `runner __complete` (the `--jobs FILE`
# typed on the line, else RUNNER_JOBS, else jobs/jobs.yaml).
function __fish_runner_names
    set -l words (commandline -opc)
    set -l jobs
    for i in (seq (count $words))
        switch $words[$i]
            case --jobs
                set jobs --jobs $words[(math $i + 1)]
            case '--jobs=*'
                set jobs $words[$i]
        end
    end
    $words[1] $jobs __complete $argv[1] 2>/dev/null
end
"#,
    );
    for (command, what) in NAMED_POSITIONALS {
        let _ = writeln!(
            out,
            "complete -c runner -n \"__fish_runner_using_subcommand {command}\" -f -a \"(__fish_runner_names {})\"",
            names_word(*what)
        );
    }
    out
}

/// `runner __complete WHAT`: the names, one a line, in the file's order. Read leniently (keys
/// only, no checks, no environment), so a file being edited still completes; a file that
/// cannot be read gives none.
pub fn names(file: &Path, what: Names) -> u8 {
    let Ok(text) = std::fs::read_to_string(file) else {
        return exit::FAILED;
    };
    let Ok(sections) = serde_saphyr::from_str::<Sections>(&text) else {
        return exit::FAILED;
    };
    for name in sections.names(what) {
        outln!("{name}");
    }
    exit::OK
}

/// The two sections of a jobs file that hold names; every other key is passed over.
#[derive(Debug, Default, serde::Deserialize)]
struct Sections {
    #[serde(default)]
    jobs: indexmap::IndexMap<String, serde_json::Value>,
    #[serde(default)]
    notifiers: indexmap::IndexMap<String, serde_json::Value>,
}

impl Sections {
    fn names(&self, what: Names) -> Vec<&str> {
        let section = match what {
            Names::Jobs | Names::Reports | Names::Monitors => &self.jobs,
            Names::Notifiers => &self.notifiers,
        };
        section
            .iter()
            .filter(|(_, entry)| {
                let kind = entry.get("type").and_then(|t| t.as_str());
                match what {
                    Names::Reports => kind == Some("report"),
                    Names::Monitors => kind == Some("monitor"),
                    Names::Jobs | Names::Notifiers => true,
                }
            })
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

pub fn man() -> u8 {
    match manual_page() {
        Ok(page) => {
            super::output::stdout_bytes(&page);
            exit::OK
        }
        Err(e) => {
            super::fail(format_args!("cannot write the manual page: {e}"));
            exit::FAILED
        }
    }
}

/// The page: clap_mangen's title, name, synopsis, description and options, then sections of
/// our own. clap_mangen's SUBCOMMANDS section would name a page per command
/// (`runner-check(1)`), which is not made: COMMANDS here describes each one in this page.
pub fn manual_page() -> std::io::Result<Vec<u8>> {
    let command = Cli::command();
    let man = clap_mangen::Man::new(command.clone().override_usage(synopsis(&command)));
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    // Each renderer starts its output with the same two-line preamble (the apostrophe string
    // for groff and others); once is enough.
    let rendered = String::from_utf8_lossy(&page).into_owned();
    let mut page = match rendered.lines().take(2).collect::<Vec<_>>().as_slice() {
        [first, second] if first.starts_with(".ie ") => {
            let preamble = format!("{first}\n{second}\n");
            let body = rendered[preamble.len()..].replace(&preamble, "");
            format!("{preamble}{body}").into_bytes()
        }
        _ => rendered.into_bytes(),
    };
    let mut own = String::new();
    commands_section(&mut own, &command);
    exit_status_section(&mut own);
    environment_section(&mut own);
    files_section(&mut own);
    signals_section(&mut own);
    page.extend_from_slice(own.as_bytes());
    Ok(page)
}

/// Two forms: the scheduler with every option spelled out (`--jobs FILE`), and a command.
fn synopsis(command: &clap::Command) -> String {
    let options: Vec<String> = command.get_arguments().filter_map(usage_of).collect();
    format!(
        "runner {}\nrunner [OPTIONS] COMMAND [ARGS]",
        options.join(" ")
    )
}

/// How an argument is written on the command line: `[--jobs FILE]`, `[-v|--verbose]...`,
/// `JOB`, `[PATHS]...`; `None` for a hidden one.
fn usage_of(arg: &Arg) -> Option<String> {
    let mut text = spelled(arg)?;
    let most = arg.get_num_args().map_or(1, |n| n.max_values());
    if !arg.is_required_set() {
        text = format!("[{text}]");
    }
    let repeats = matches!(arg.get_action(), ArgAction::Count)
        || (matches!(arg.get_action(), ArgAction::Append) && most <= 1)
        || (arg.is_positional() && most > 1);
    if repeats {
        text.push_str("...");
    }
    Some(text)
}

/// An argument as written once: `--jobs FILE`, `-v|--verbose`, `--rules FILE...` (several
/// values after one flag), `--compare [FILE...]` (maybe none), `JOB`.
fn spelled(arg: &Arg) -> Option<String> {
    if arg.is_hide_set() {
        return None;
    }
    if arg.is_positional() {
        return Some(value_name(arg));
    }
    let flag = match (arg.get_short(), arg.get_long()) {
        (Some(short), Some(long)) => format!("-{short}|--{long}"),
        (Some(short), None) => format!("-{short}"),
        (None, Some(long)) => format!("--{long}"),
        (None, None) => return None,
    };
    if !arg.get_action().takes_values() {
        return Some(flag);
    }
    let (fewest, most) = arg
        .get_num_args()
        .map_or((1, 1), |n| (n.min_values(), n.max_values()));
    let mut value = value_name(arg);
    if most > 1 {
        value.push_str("...");
    }
    if fewest == 0 {
        value = format!("[{value}]");
    }
    Some(format!("{flag} {value}"))
}

/// The values an option takes (`human|json`), else `FILE` as the definition names it, else
/// its name.
fn value_name(arg: &Arg) -> String {
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !values.is_empty() && !arg.is_positional() {
        return values.join("|");
    }
    if let Some(names) = arg.get_value_names() {
        return names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(" ");
    }
    arg.get_id().as_str().to_uppercase()
}

/// Text for roff: backslashes and hyphens escaped, and a line that would start with a control
/// character (`.`, `'`) made text.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, ".SH {title}");
}

/// A tagged paragraph: `tag` in bold, then `body`.
fn item(out: &mut String, tag: &str, body: &str) {
    let _ = writeln!(out, ".TP\n\\fB{}\\fR\n{}", roff_text(tag), roff_text(body));
}

/// Each visible command with its usage, what it does and its own options.
fn commands_section(out: &mut String, command: &clap::Command) {
    section(out, "COMMANDS");
    let _ = writeln!(
        out,
        "{}",
        roff_text(
            "Without a command, runner runs the scheduler in the foreground. The options above \
             may be given to every command too, except --listen."
        )
    );
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let args: Vec<&Arg> = sub.get_arguments().filter(|a| !a.is_hide_set()).collect();
        let mut usage = format!("runner {}", sub.get_name());
        // Options first, as `--help` shows them, then the positionals.
        for arg in args.iter().filter(|a| !a.is_positional()) {
            if let Some(text) = usage_of(arg) {
                usage = format!("{usage} {text}");
            }
        }
        for arg in args.iter().filter(|a| a.is_positional()) {
            if let Some(text) = usage_of(arg) {
                usage = format!("{usage} {text}");
            }
        }
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        item(out, &usage, &about);
        if args.is_empty() {
            continue;
        }
        let _ = writeln!(out, ".RS");
        for arg in args {
            let tag = spelled(arg).unwrap_or_default();
            let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() {
                let _ = write!(help, " [default: {}]", defaults.join(", "));
            }
            let _ = writeln!(
                out,
                ".TP\n\\fI{}\\fR\n{}",
                roff_text(&tag),
                roff_text(&help)
            );
        }
        let _ = writeln!(out, ".RE");
    }
}

/// The exit codes, from the constants the commands return (docs/operations.md lists the same).
pub const EXIT_STATUS: &[(u8, &str)] = &[
    (
        exit::OK,
        "Success; also after a clean shutdown on SIGINT or SIGTERM, and for runner run of a job that is off (it says why).",
    ),
    (
        exit::FAILED,
        "The jobs file or a rule has problems, the job run failed, or rule tests failed.",
    ),
    (
        exit::USAGE,
        "Command-line usage error (unknown flag, unknown job name, no rule tests found).",
    ),
    (
        exit::BUSY,
        "Busy: another scheduler holds this data_dir, or the job is already running.",
    ),
    (
        exit::INTERRUPTED,
        "A second SIGINT or SIGTERM cut the grace period short.",
    ),
];

fn exit_status_section(out: &mut String) {
    section(out, "EXIT STATUS");
    for (code, meaning) in EXIT_STATUS {
        item(out, &code.to_string(), meaning);
    }
}

fn environment_section(out: &mut String) {
    section(out, "ENVIRONMENT");
    let variables: &[(&str, &str)] = &[
        (
            "RUNNER_JOBS",
            "The jobs file when --jobs is not given (else jobs/jobs.yaml).",
        ),
        (
            "RUNNER_LISTEN",
            "The address the scheduler serves /metrics, the alerts, health and the status page on, when --listen is not given; it takes precedence over listen: in the jobs file.",
        ),
        (
            "HOST_PROC",
            "Where the host's /proc is, when --proc-root is not given (a runner in a container watching its host: /host/proc).",
        ),
        (
            "HOST_SYS",
            "Where the host's /sys is, when --sys-root is not given.",
        ),
        (
            "NOTIFY_SOCKET",
            "Set by systemd for Type=notify: runner sends READY=1 once its jobs are scheduled and STOPPING=1 at the stop signal.",
        ),
        (
            "WATCHDOG_USEC, WATCHDOG_PID",
            "Set by systemd for WatchdogSec=: the scheduler sends WATCHDOG=1 while it runs.",
        ),
        (
            "JOURNAL_STREAM",
            "Set by systemd when stderr goes to the journal: plain-text log lines then start with a syslog priority (<3> for errors) so journalctl -p finds them.",
        ),
        (
            "TZ",
            "The local time zone (timezone: Local), as the C library reads it.",
        ),
        (
            "HOSTNAME",
            "The host name written into samples and alerts when the jobs file gives no host: and the kernel's cannot be read.",
        ),
        (
            "SLACK_WEBHOOK_URL",
            "The Slack notifier of the shipped jobs file; unset, that notifier is off.",
        ),
        (
            "SERVICENOW_INSTANCE, SERVICENOW_USER, SERVICENOW_PASSWORD",
            "The ServiceNow notifier of the shipped jobs file; unset, it is off and the servicenow-sync job is skipped.",
        ),
    ];
    for (name, meaning) in variables {
        item(out, name, meaning);
    }
    let _ = writeln!(
        out,
        ".PP\n{}",
        roff_text(
            "Any string value of the jobs file may read a variable with ${VAR} or \
             ${VAR:-default}; secrets (webhook URLs, tokens, passwords) must come that way."
        )
    );
}

fn files_section(out: &mut String) {
    section(out, "FILES");
    let files: &[(&str, &str)] = &[
        (
            "jobs/jobs.yaml",
            "The default jobs file; relative paths inside a jobs file resolve against its folder.",
        ),
        (
            "data_dir/metrics/",
            "The metrics log: one JSON line per monitor tick, a file per UTC day.",
        ),
        ("data_dir/alerts/", "Alert events, a file per UTC day."),
        (
            "data_dir/incidents/incidents.json",
            "The ServiceNow incident cache the report reads.",
        ),
        (
            "data_dir/reports/",
            "Rendered reports, reports/<job>-<date>.<ext>.",
        ),
        (
            "data_dir/statements/",
            "pg_stat_statements snapshots of postgres probes, statements/<job>/<probe>/<day>.jsonl, 35 days kept, for the report's Slowest queries.",
        ),
        (
            "data_dir/outbox/",
            "Notices waiting for delivery: <notifier>.jsonl, .done, and dead/ for dead letters.",
        ),
        (
            "data_dir/state/",
            "runner.lock (one scheduler per data_dir), last-reload.json (the last reload's outcome, which runner reload waits for), loaded-rules.json and loaded-rules/ (the rule files the running scheduler loaded, with a copy of each, which runner check compares), locks/<job>.lock (one run of a job at once), alerts/<job>.json (alert state), rollups/<job>/ (history), remote_write.json (what the remote-write receiver acknowledged).",
        ),
        (
            "data_dir/archive/",
            "Archives of rotated logs (the default archive_dir of rotate jobs).",
        ),
    ];
    for (path, meaning) in files {
        item(out, path, meaning);
    }
}

fn signals_section(out: &mut String) {
    section(out, "SIGNALS");
    let _ = writeln!(
        out,
        "{}",
        roff_text("The scheduler (runner without a command) handles:")
    );
    let signals: &[(&str, &str)] = &[
        (
            "SIGHUP",
            "Reload the jobs file, rules and templates, as runner reload does; a change with problems keeps the running configuration.",
        ),
        (
            "SIGTERM, SIGINT",
            "Stop starting runs and give running jobs shutdown_grace (default 30s) to finish, then exit 0.",
        ),
        (
            "second SIGTERM or SIGINT",
            "Leave at once with exit status 130, killing every command a probe started.",
        ),
    ];
    for (signal, meaning) in signals {
        item(out, signal, meaning);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_sections_in_order_report_jobs_by_type() {
        let sections: Sections = serde_saphyr::from_str(
            "data_dir: var\njobs:\n  monitor: { type: monitor }\n  weekly: { type: report }\n  odd: 3\nnotifiers:\n  slack: { type: slack }\n",
        )
        .unwrap();
        assert_eq!(sections.names(Names::Jobs), ["monitor", "weekly", "odd"]);
        assert_eq!(sections.names(Names::Reports), ["weekly"]);
        assert_eq!(sections.names(Names::Monitors), ["monitor"]);
        assert_eq!(sections.names(Names::Notifiers), ["slack"]);
        let empty: Sections = serde_saphyr::from_str("data_dir: var\n").unwrap();
        assert!(empty.names(Names::Jobs).is_empty());
    }

    #[test]
    fn usage_spells_values_and_repeats() {
        let command = Cli::command();
        let synopsis = synopsis(&command);
        for part in [
            "[--jobs FILE]",
            "[--log-format human|json]",
            "[-v|--verbose]...",
            "[--listen ADDR]",
        ] {
            assert!(synopsis.contains(part), "{part} not in {synopsis}");
        }
    }

    #[test]
    fn several_values_and_maybe_none_are_spelled_as_such() {
        let arg = |name: &'static str| Arg::new(name).long(name).value_name("FILE");
        let case = |arg: Arg, expected: &str| assert_eq!(usage_of(&arg).unwrap(), expected);
        case(arg("out"), "[--out FILE]");
        case(
            arg("template").action(ArgAction::Append),
            "[--template FILE]...",
        );
        case(
            arg("rules").action(ArgAction::Append).num_args(1..),
            "[--rules FILE...]",
        );
        case(arg("compare").num_args(0..), "[--compare [FILE...]]");
        case(Arg::new("job").required(true), "JOB");
    }

    #[test]
    fn roff_text_escapes_hyphens_and_leading_dots() {
        assert_eq!(roff_text("--jobs"), "\\-\\-jobs");
        assert_eq!(roff_text(".done"), "\\&.done");
        assert_eq!(roff_text("a\\b"), "a\\eb");
    }
}
