//! What a newcomer meets first: the manual page, shell completions that know the jobs file's
//! names, and the container image's user, capability, port and healthcheck.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::support::{PATIENCE, Running, command, jobs_file, root, run, runner_bin, stdout};

/// The text of a man page section, from its `.SH` line to the next.
fn man_section<'a>(page: &'a str, title: &str) -> &'a str {
    let heading = format!(".SH {title}\n");
    let start = page
        .find(&heading)
        .unwrap_or_else(|| panic!("no {title} section:\n{page}"))
        + heading.len();
    let end = page[start..]
        .find("\n.SH ")
        .map_or(page.len(), |e| start + e);
    &page[start..end]
}

/// Roff text back to what it reads as: `\-` is `-`, `\&` nothing, `\e` a backslash.
fn plain(roff: &str) -> String {
    roff.replace("\\-", "-")
        .replace("\\&", "")
        .replace("\\e", "\\")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
}

#[test]
fn the_manual_names_no_missing_page_and_has_every_section() {
    let output = run(&["man"]);
    assert_eq!(output.status.code(), Some(0));
    let page = stdout(&output);
    for title in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "SIGNALS",
    ] {
        man_section(&page, title);
    }
    // A reference to a page, `name(section)`, may only be runner's own.
    let text = plain(&page);
    let references = regex::Regex::new(r"([A-Za-z0-9_.-]+)\((\d)\)").unwrap();
    for found in references.captures_iter(&text) {
        assert_eq!(&found[0], "runner(1)", "a reference to a page not made");
    }
    assert!(!page.contains("SUBCOMMANDS"), "{page}");
    // The synopsis spells each option's value.
    let synopsis = plain(man_section(&page, "SYNOPSIS"));
    for part in [
        "[--jobs FILE]",
        "[--listen ADDR]",
        "[--log-format human|json]",
    ] {
        assert!(synopsis.contains(part), "{part} not in {synopsis}");
    }
    // Every command the help lists, with its usage; none of the hidden ones.
    let commands = plain(man_section(&page, "COMMANDS"));
    for usage in [
        "runner check",
        "runner run JOB",
        "runner dry-run [--from-log] JOB",
        "runner report [--template FILE]... [--window DURATION]",
        "runner notify-test NOTIFIER",
        "runner reload",
        "runner completions SHELL",
        "runner test [PATHS]...",
    ] {
        assert!(commands.contains(usage), "{usage} not in {commands}");
    }
    assert!(!commands.contains("__complete") && !commands.contains("healthcheck"));
    // The exit codes are those docs/operations.md lists.
    let operations = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let table = &operations[operations.find("## Exit codes").unwrap()..];
    let table = &table[..table[3..].find("\n## ").unwrap()];
    let documented: BTreeSet<String> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(' ').next())
        .filter(|code| code.parse::<u8>().is_ok())
        .map(str::to_string)
        .collect();
    let exit_status = man_section(&page, "EXIT STATUS");
    let listed: BTreeSet<String> = exit_status
        .lines()
        .filter_map(|l| l.strip_prefix("\\fB").and_then(|l| l.strip_suffix("\\fR")))
        .map(str::to_string)
        .collect();
    assert_eq!(listed, documented);
    // Every variable runner reads, and each one the shipped jobs file names.
    let environment = plain(man_section(&page, "ENVIRONMENT"));
    for name in variables_read() {
        assert!(environment.contains(&name), "{name} not in ENVIRONMENT");
    }
    let shipped = std::fs::read_to_string(root().join("jobs/jobs.yaml")).unwrap();
    let expansions = regex::Regex::new(r"\$\{([A-Z_][A-Z0-9_]*)").unwrap();
    for found in expansions.captures_iter(&shipped) {
        if &found[1] != "VAR" {
            assert!(
                environment.contains(&found[1]),
                "{} not in ENVIRONMENT",
                &found[1]
            );
        }
    }
    // Every file and folder docs/operations.md says runner writes.
    let files = plain(man_section(&page, "FILES"));
    let written = &operations[operations.find("## Files runner writes").unwrap()..];
    let written = &written[written.find("Everything").unwrap()..];
    let written = &written[..written.find("\n\n").unwrap_or(written.len())];
    let named = regex::Regex::new(r"`([^`]+)`").unwrap();
    for found in named.captures_iter(written) {
        assert!(files.contains(&found[1]), "{} not in FILES", &found[1]);
    }
    assert!(man_section(&page, "SIGNALS").contains("SIGHUP"));
    // As `man` reads it: groff warns about nothing.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runner.1");
    std::fs::write(&file, &page).unwrap();
    // Where groff is installed (the check is skipped without it).
    if let Ok(checked) = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&file)
        .output()
    {
        assert!(checked.status.success());
        assert_eq!(String::from_utf8_lossy(&checked.stderr), "");
    }
}

/// The environment variables src/ reads by name, but the failpoints that only tests set.
fn variables_read() -> BTreeSet<String> {
    let reads = regex::Regex::new(r#"(?:env::var(?:_os)?\(|env = )"([A-Z_][A-Z0-9_]*)""#).unwrap();
    let mut names = BTreeSet::new();
    let mut folders = vec![root().join("src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for found in reads.captures_iter(&text) {
                    names.insert(found[1].to_string());
                }
            }
        }
    }
    names.remove("RUNNER_FAILPOINT");
    assert!(names.contains("RUNNER_LISTEN"), "{names:?}");
    names
}

const NAMED: &str = "notifiers:\n  hook: { type: webhook, url: \"http://127.0.0.1:9/x\" }\n  pager: { type: webhook, url: \"http://127.0.0.1:9/y\" }\njobs:\n  alpha:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes: [{ type: cpu }]\n  also:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes: [{ type: memory }]\n  weekly:\n    type: report\n    schedule: \"0 0 8 * * Mon\"\n";

/// What bash offers for the line `words` (the last word being completed), with the script
/// `runner completions bash` prints loaded as /etc/bash_completion.d would.
fn bash_offers(script: &Path, words: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n$(complete -p runner | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p') \"${{COMP_WORDS[0]}}\" \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.len() - 1
    );
    let mut bash = Command::new("bash");
    bash.arg("-c").arg(program).env_remove("RUNNER_JOBS");
    for (key, value) in env {
        bash.env(key, value);
    }
    let output = bash.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut offers: Vec<String> = stdout(&output)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    offers.sort();
    offers
}

#[test]
fn completions_offer_the_jobs_files_job_and_notifier_names() {
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(dir.path(), NAMED);
    let file = file.to_str().unwrap();
    let names = |what: &str| stdout(&run(&["--jobs", file, "__complete", what]));
    assert_eq!(names("jobs"), "alpha\nalso\nweekly\n");
    assert_eq!(names("reports"), "weekly\n");
    assert_eq!(names("monitors"), "alpha\nalso\n");
    assert_eq!(names("notifiers"), "hook\npager\n");

    let script = dir.path().join("runner.bash");
    let output = run(&["completions", "bash"]);
    assert_eq!(output.status.code(), Some(0));
    std::fs::write(&script, &output.stdout).unwrap();
    let bin = runner_bin();
    let jobs = ["alpha", "also", "weekly"];
    assert_eq!(
        bash_offers(&script, &[bin, "--jobs", file, "run", ""], &[]),
        jobs
    );
    assert_eq!(
        bash_offers(&script, &[bin, "run", "--jobs", file, "al"], &[]),
        ["alpha", "also"]
    );
    assert_eq!(
        bash_offers(&script, &[bin, "-v", "--jobs", file, "dry-run", "w"], &[]),
        ["weekly"]
    );
    // `--jobs=FILE`, split at `=` as bash's COMP_WORDBREAKS splits it.
    assert_eq!(
        bash_offers(&script, &[bin, "--jobs", "=", file, "report", ""], &[]),
        ["weekly"]
    );
    assert_eq!(
        bash_offers(&script, &[bin, "--jobs", file, "replay", ""], &[]),
        ["alpha", "also"]
    );
    assert_eq!(
        bash_offers(&script, &[bin, "notify-test", ""], &[("RUNNER_JOBS", file)]),
        ["hook", "pager"]
    );
    // Past the name, and for options, clap's own completion answers.
    let after = bash_offers(&script, &[bin, "--jobs", file, "run", "alpha", "--"], &[]);
    assert!(
        after.contains(&"--help".to_string()) && !after.contains(&"alpha".to_string()),
        "{after:?}"
    );
    let commands = bash_offers(&script, &[bin, ""], &[]);
    assert!(
        commands.contains(&"dry-run".to_string()) && !commands.iter().any(|c| c.starts_with("__")),
        "{commands:?}"
    );

    // zsh and fish (not installed here) get the same command in their name positions.
    let zsh = stdout(&run(&["completions", "zsh"]));
    assert_eq!(zsh.matches(":_runner_names jobs' \\").count(), 2, "{zsh}");
    assert_eq!(zsh.matches(":_runner_names reports' \\").count(), 1);
    assert_eq!(zsh.matches(":_runner_names monitors' \\").count(), 1);
    assert_eq!(zsh.matches(":_runner_names notifiers' \\").count(), 1);
    assert!(zsh.contains("__complete $1"));
    let fish = stdout(&run(&["completions", "fish"]));
    for (command, what) in [
        ("run", "jobs"),
        ("dry-run", "jobs"),
        ("report", "reports"),
        ("replay", "monitors"),
        ("notify-test", "notifiers"),
    ] {
        let line = format!(
            "complete -c runner -n \"__fish_runner_using_subcommand {command}\" -f -a \"(__fish_runner_names {what})\""
        );
        assert!(fish.contains(&line), "{line}");
    }
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile_instructions() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let mut instructions = Vec::new();
    let mut continued = String::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        continued.push_str(line.trim_end_matches('\\').trim());
        if line.ends_with('\\') {
            continued.push(' ');
            continue;
        }
        if !continued.trim().is_empty() {
            instructions.push(continued.trim().to_string());
        }
        continued.clear();
    }
    instructions
}

#[test]
fn the_image_runs_as_a_user_with_net_raw_and_its_healthcheck_asks_a_running_runner() {
    let instructions = dockerfile_instructions();
    let last_from = instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .unwrap();
    let (build, image) = instructions.split_at(last_from);
    let position = |prefix: &str| image.iter().position(|i| i.starts_with(prefix));

    // A user made in the image's own steps, and the process runs as it.
    let user = image
        .iter()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("a USER");
    let made = image
        .iter()
        .position(|i| {
            i.starts_with("RUN ")
                && i.contains("useradd")
                && i.split_whitespace().any(|w| w == user)
        })
        .expect("the USER is made in a RUN step");
    assert!(made < position("USER ").unwrap());
    // Its volume's folder is its own.
    assert!(
        image[made].contains(&format!("chown {user}:{user} /opt/runner/var")),
        "{}",
        image[made]
    );
    // One capability, on the binary.
    let setcap = image
        .iter()
        .find(|i| i.starts_with("RUN ") && i.contains("setcap"))
        .expect("setcap");
    assert!(
        setcap.contains("cap_net_raw=ep /usr/local/bin/runner"),
        "{setcap}"
    );
    let header = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(header.contains("--cap-drop ALL --cap-add NET_RAW"));

    // The port it listens on is the one exposed.
    let listen = image
        .iter()
        .find_map(|i| i.strip_prefix("ENV "))
        .and_then(|env| {
            env.split(' ')
                .find_map(|s| s.strip_prefix("RUNNER_LISTEN="))
        })
        .expect("ENV RUNNER_LISTEN");
    let port = listen.rsplit(':').next().unwrap();
    assert!(
        image.iter().any(|i| i == &format!("EXPOSE {port}")),
        "EXPOSE {port}"
    );

    // The dependencies are built before runner's sources come in.
    let step = |prefix: &str| build.iter().position(|i| i.starts_with(prefix)).unwrap();
    let deps = build
        .iter()
        .position(|i| i.starts_with("RUN ") && i.contains("cargo build"))
        .unwrap();
    assert!(step("COPY Cargo.toml Cargo.lock") < deps && deps < step("COPY src src"));
    stubs_cover_every_target(&build[deps]);

    // The healthcheck, run as Docker runs it (`sh -c`), against a runner listening on loopback.
    let check = image
        .iter()
        .find_map(|i| i.strip_prefix("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    let shell = check[check.find("CMD ").unwrap() + 4..].to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        "jobs:\n  m:\n    type: monitor\n    schedule: \"@every 10s\"\n    probes: [{ type: load }]\n",
    );
    let mut cmd = command(&["--jobs", file.to_str().unwrap()]);
    cmd.env("RUNNER_LISTEN", "127.0.0.1:0");
    let mut running = Running::spawn(cmd);
    let line = running.wait_for_line("serving the status page", PATIENCE);
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line}"))
        .to_string();
    let bin_dir = Path::new(runner_bin()).parent().unwrap();
    let healthcheck = || {
        Command::new("sh")
            .arg("-c")
            .arg(&shell)
            .env("PATH", format!("{}:/usr/bin:/bin", bin_dir.display()))
            .env("RUNNER_LISTEN", &address)
            .output()
            .unwrap()
    };
    let healthy = healthcheck();
    assert_eq!(
        healthy.status.code(),
        Some(0),
        "{}",
        crate::support::stderr(&healthy)
    );
    assert!(stdout(&healthy).contains("200"), "{}", stdout(&healthy));
    running.signal("TERM");
    assert_eq!(running.wait_exit(PATIENCE).0, Some(0));
    let gone = healthcheck();
    assert_eq!(gone.status.code(), Some(1), "{}", stdout(&gone));
}

/// The dependency step's stubs stand for every target the manifest names, so cargo can build
/// the dependencies before the sources are there.
fn stubs_cover_every_target(step: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("Cargo.toml"), dir.path().join("Cargo.toml")).unwrap();
    let script = step.strip_prefix("RUN ").unwrap();
    // Everything up to the build: making the stubs.
    let stubs = &script[..script.find("&& cargo build").unwrap()];
    let made = Command::new("sh")
        .arg("-c")
        .arg(stubs)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", crate::support::stderr(&made));
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let mut targets = Vec::new();
    let mut section = String::new();
    for line in manifest.lines() {
        if line.starts_with('[') {
            section = line.to_string();
        } else if let Some(path) = line
            .strip_prefix("path = \"")
            .and_then(|l| l.strip_suffix('"'))
        {
            targets.push(path.to_string());
        } else if section == "[[bench]]"
            && let Some(name) = line
                .strip_prefix("name = \"")
                .and_then(|l| l.strip_suffix('"'))
        {
            targets.push(format!("benches/{name}.rs"));
        }
    }
    assert!(targets.len() >= 4, "{targets:?}");
    for target in targets {
        assert!(dir.path().join(&target).exists(), "no stub for {target}");
    }
}

#[test]
fn the_quick_start_spells_runner_as_the_binary_it_builds() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("## Quick start").unwrap();
    let quick = &readme[start..start + readme[start..].find("\n## Documentation").unwrap()];
    assert!(quick.contains("`target/release/runner`") && quick.contains("/usr/local/bin"));
    let code = regex::Regex::new(r"`([^`\n]+)`|```sh\n((?s:.*?))```").unwrap();
    let mut spelled = 0;
    for found in code.captures_iter(quick) {
        let text = found.get(1).or(found.get(2)).unwrap().as_str();
        for line in text.lines() {
            assert!(
                !line.trim_start().starts_with("runner "),
                "`{line}`: the quick start runs ./target/release/runner"
            );
            spelled += line.matches("./target/release/runner ").count();
        }
    }
    assert!(spelled >= 6, "{spelled}");
}

#[test]
fn each_listen_auth_shape_the_configuration_shows_loads_with_its_secret_set() {
    let docs = std::fs::read_to_string(root().join("docs/configuration.md")).unwrap();
    let section = &docs[docs
        .find("### `listen` and `listen_auth`")
        .expect("a listen_auth section")..];
    let section = &section[..section[4..].find("\n### ").unwrap()];
    let shapes: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .map(|b| b[..b.find("```").unwrap()].trim())
        .collect();
    assert_eq!(shapes.len(), 2, "{section}");
    let variable = regex::Regex::new(r"\$\{([A-Z_]+)\}").unwrap();
    let file = root().join("jobs/docs-example.yaml");
    for shape in shapes {
        let name = variable.captures(shape).expect("a ${VAR}")[1].to_string();
        let yaml = format!(
            "data_dir: var\nlisten: 0.0.0.0:9464\n{shape}\njobs:\n  m: {{ type: monitor, schedule: \"@every 10s\", probes: [{{ type: cpu }}] }}\n"
        );
        let set = |var: &str| (var == name).then(|| "s3cret".to_string());
        let config = runner::config::build::parse(&file, &yaml, &set)
            .unwrap_or_else(|p| panic!("{shape}: {}", p.render()));
        assert!(config.listen.unwrap().auth.is_some());
        // Unset, the secret is missing: the file does not load.
        assert!(
            runner::config::build::parse(&file, &yaml, &|_| None).is_err(),
            "{shape}"
        );
    }
}
