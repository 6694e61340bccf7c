//! `portcullis completions bash|zsh|fish` and `portcullis man`: generated from the same clap
//! definition as the parser, so they never drift from it.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory as _;

use super::{Cli, EXIT_RUNTIME};

/// The shells completions are generated for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Print the completion script for `shell`.
pub fn completions(shell: Shell) -> ExitCode {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "portcullis", &mut out);
    emit(&out)
}

/// Print the top-level man page, or write every page into `dir`.
pub fn man(dir: Option<&Path>) -> ExitCode {
    let pages = match pages() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: rendering the man pages: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let Some(dir) = dir else {
        return match pages.first() {
            Some((_, page)) => emit(page),
            None => ExitCode::from(EXIT_RUNTIME),
        };
    };
    for (name, page) in &pages {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, page) {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::from(EXIT_RUNTIME);
        }
    }
    println!("wrote {} man pages to {}", pages.len(), dir.display());
    ExitCode::SUCCESS
}

/// `(file name, roff)` of `portcullis.1` first, then `portcullis-revoke.1`,
/// `portcullis-token-inspect.1`… (git's layout: clap_mangen's SUBCOMMANDS section of each page
/// names the pages below it that way).
pub fn pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    collect(&cmd, &mut out)?;
    Ok(out)
}

/// `cmd`'s page and its subcommands' (after `build`, a subcommand's display name is
/// `portcullis-revoke`, which clap_mangen uses as the page's title).
fn collect(cmd: &clap::Command, out: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut roff)?;
    out.push((format!("{name}.1"), roff));
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        collect(sub, out)?;
    }
    Ok(())
}

fn emit(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not worth a message; any other error is.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
