//! `runner completions SHELL` and `runner man`: shell completions and the manual page, made
//! from the same argument definitions the command line is parsed with.

use clap::CommandFactory;

use super::{Cli, exit};

pub fn completions(shell: clap_complete::Shell) -> u8 {
    let mut command = Cli::command();
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut command, "runner", &mut text);
    super::output::stdout_bytes(&text);
    exit::OK
}

pub fn man() -> u8 {
    let man = clap_mangen::Man::new(Cli::command());
    let mut page = Vec::new();
    match man.render(&mut page) {
        Ok(()) => {
            super::output::stdout_bytes(&page);
            exit::OK
        }
        Err(e) => {
            super::fail(format_args!("cannot write the manual page: {e}"));
            exit::FAILED
        }
    }
}
