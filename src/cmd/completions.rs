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

/// Subcommands whose first word is a profile (`profiles show PROFILE`), as clap names their blocks in bash.
const BASH_PROFILE_SUBCOMMANDS: &[&str] =
    &["steward__subcmd__profiles__subcmd__show)", "steward__subcmd__profiles__subcmd__test)"];

/// The completion script for `shell`, with profile names completed after `--profile` and where a command takes
/// a profile by its position.
pub fn script(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "steward", &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    match shell {
        Shell::Bash => bash_positional_profiles(text.replace(
            "--profile)\n                    COMPREPLY=($(compgen -f \"${cur}\"))",
            &format!("--profile)\n                    COMPREPLY=($(compgen -W \"$({NAMES})\" -- \"${{cur}}\"))"),
        )),
        Shell::Zsh => {
            let text = text
                .replace("no name]:NAME:_default'", "no name]:NAME:_steward_profiles'")
                .replace(":PROFILE:_default'", ":PROFILE:_steward_profiles'")
                .replace("profile):_default'", "profile):_steward_profiles'");
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

/// Bash: in a subcommand that takes a profile by position, the word there is completed from the profile names
/// (an option still from the options).
fn bash_positional_profiles(mut text: String) -> String {
    const OPTIONS: &str = "COMPREPLY=( $(compgen -W \"${opts}\" -- \"${cur}\") )";
    for block in BASH_PROFILE_SUBCOMMANDS {
        let Some(at) = text.find(block).and_then(|start| Some(start + text[start..].find(OPTIONS)?)) else { continue };
        let either = format!(
            "if [[ ${{cur}} == -* ]]; then {OPTIONS}; else COMPREPLY=( $(compgen -W \"$({NAMES})\" -- \"${{cur}}\") ); fi"
        );
        text.replace_range(at..at + OPTIONS.len(), &either);
    }
    text
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
        assert!(!script(Shell::Zsh).contains("PROFILE:_default'"), "zsh: a positional profile completes files");
        let bash = script(Shell::Bash);
        for block in BASH_PROFILE_SUBCOMMANDS {
            let at = bash.find(block).unwrap_or_else(|| panic!("bash: no {block} (clap's output changed?)"));
            let rest = &bash[at + block.len()..];
            let this_block = &rest[..rest.find("\n        steward__").unwrap_or(rest.len())];
            assert!(this_block.contains(NAMES), "bash: {block} offers no profile names");
        }
    }
}
