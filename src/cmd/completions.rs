//! `steward completions SHELL`: clap's completion script, taught to complete profile names (`--profile <Tab>`
//! asks `steward profiles names`, which reads the config and nothing else).

use crate::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;

/// What the shell runs to list the profiles; silent when there is no config.
const NAMES: &str = "steward profiles names 2>/dev/null";

pub fn run(shell: Shell) -> anyhow::Result<()> {
    // Written whole, so a reader that stops early (`| head`) is a quiet end, not a panic.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), script(shell).as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The completion script for `shell`, with profile names completed after `--profile`.
pub fn script(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "steward", &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    match shell {
        Shell::Bash => text.replace(
            "--profile)\n                    COMPREPLY=($(compgen -f \"${cur}\"))",
            &format!("--profile)\n                    COMPREPLY=($(compgen -W \"$({NAMES})\" -- \"${{cur}}\"))"),
        ),
        Shell::Zsh => {
            let text = text.replace("no name]:NAME:_default'", "no name]:NAME:_steward_profiles'");
            let helper = format!(
                "_steward_profiles() {{\n    local -a names\n    names=(${{(f)\"$({NAMES})\"}})\n    _describe 'profile' names\n}}\n\n"
            );
            match text.rfind("if [ \"$funcstack[1]\" = \"_steward\" ]") {
                Some(at) => format!("{}{helper}{}", &text[..at], &text[at..]),
                None => text,
            }
        }
        Shell::Fish => text.replace(
            "-l profile -d 'The profile `connect()` opens when given no name' -r",
            &format!("-l profile -d 'The profile `connect()` opens when given no name' -r -f -a \"({NAMES})\""),
        ),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_are_completed_in_bash_zsh_and_fish() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = script(shell);
            assert!(text.contains(NAMES), "{shell}: the profile completion is missing (clap's output changed?)");
        }
        assert!(!script(Shell::Zsh).contains("no name]:NAME:_default'"));
    }
}
