//! What the line editor needs to know about Rhai text, pure: is a block still open, and what to complete.

/// True while brackets or a string are still open, or the text ends where a statement cannot (a trailing
/// `else` or operator), so Enter continues on the next line.
pub fn is_incomplete(src: &str) -> bool {
    let mut depth: i64 = 0;
    let mut chars = src.chars().peekable();
    let mut in_string: Option<char> = None;
    // The code outside strings and comments (a string stands as one quote): its end tells a dangling `else`.
    let mut code = String::new();
    while let Some(c) = chars.next() {
        match in_string {
            Some(q) => match c {
                '\\' => {
                    chars.next();
                }
                c if c == q => in_string = None,
                _ => {}
            },
            None => match c {
                '"' | '`' => {
                    in_string = Some(c);
                    code.push('"');
                }
                '\'' => {
                    // A character literal: skip to its closing quote.
                    for n in chars.by_ref() {
                        if n == '\'' {
                            break;
                        }
                    }
                    code.push('"');
                }
                '/' if chars.peek() == Some(&'/') => {
                    for n in chars.by_ref() {
                        if n == '\n' {
                            break;
                        }
                    }
                    code.push('\n');
                }
                c => {
                    match c {
                        '{' | '(' | '[' => depth += 1,
                        '}' | ')' | ']' => depth -= 1,
                        _ => {}
                    }
                    code.push(c);
                }
            },
        }
    }
    // A closing surplus is a syntax error for the parser to report, not a reason to wait.
    depth > 0 || in_string.is_some() || dangles(code.trim_end())
}

/// Code that cannot end here: `… else`, or a binary operator, `=`, `,` or `.` with its right side to come.
fn dangles(code: &str) -> bool {
    let word_end = |w: &str| {
        code.strip_suffix(w).is_some_and(|before| !before.ends_with(|c: char| c.is_alphanumeric() || c == '_'))
    };
    word_end("else") || code.ends_with(['=', '+', '-', '*', '/', '%', '&', '|', ',', '.', '!', '<', '>'])
}

/// What the word under the cursor is, for completion.
#[derive(Debug, PartialEq)]
pub enum Slot<'a> {
    /// After `h.`: a method name, and what it is called on.
    Method(&'a str, Receiver<'a>),
    /// Inside `connect("`: a profile name.
    Profile(&'a str),
    /// A `:command` at the start of the line.
    Command(&'a str),
    /// After `:help `: any function or method's name.
    Help(&'a str),
    /// Anywhere else: a function, variable or keyword.
    Name(&'a str),
}

/// What stands before the dot of a method call, as far as the line tells.
#[derive(Debug, PartialEq)]
pub enum Receiver<'a> {
    /// A variable (`gh.`).
    Var(&'a str),
    /// `connect("name").`
    Profile(&'a str),
    /// `connect().`: the default profile.
    DefaultProfile,
    /// Anything else (`users[0].`, `x().`).
    Unknown,
}

/// The receiver of a method whose dot ends `before`.
fn receiver(before: &str) -> Receiver<'_> {
    let text = before.trim_end();
    if text.ends_with("connect()") {
        return Receiver::DefaultProfile;
    }
    if let Some(rest) = text.strip_suffix("\")") {
        if let Some(i) = rest.rfind("connect(\"") {
            let name = &rest[i + "connect(\"".len()..];
            if !name.contains('"') {
                return Receiver::Profile(name);
            }
        }
        return Receiver::Unknown;
    }
    let start = text.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map(|i| i + 1).unwrap_or(0);
    match &text[start..] {
        "" => Receiver::Unknown,
        name if text[..start].ends_with('.') || name.starts_with(|c: char| c.is_ascii_digit()) => Receiver::Unknown,
        name => Receiver::Var(name),
    }
}

/// The slot being typed at `pos` and where its word starts.
pub fn slot(line: &str, pos: usize) -> (usize, Slot<'_>) {
    let before = &line[..pos];
    if before.starts_with(':') && !before.contains(char::is_whitespace) {
        return (0, Slot::Command(before));
    }
    if let Some(word) = before.strip_prefix(":help ").map(str::trim_start) {
        return (pos - word.len(), Slot::Help(word));
    }
    if let Some(i) = before.rfind("connect(") {
        let rest = before[i + "connect(".len()..].trim_start();
        if let Some(partial) = rest.strip_prefix('"') {
            if !partial.contains('"') {
                return (pos - partial.len(), Slot::Profile(partial));
            }
        }
    }
    let start = before.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map(|i| i + 1).unwrap_or(0);
    let word = &before[start..];
    if let Some(object) = before[..start].strip_suffix('.') {
        (start, Slot::Method(word, receiver(object)))
    } else {
        (start, Slot::Name(word))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_blocks_continue() {
        assert!(is_incomplete("for u in users {"));
        assert!(is_incomplete("let x = [1,\n2"));
        assert!(is_incomplete("let s = \"abc"));
        assert!(!is_incomplete("let s = \"{\";"));
        assert!(!is_incomplete("if x { 1 } else { 2 }"));
        assert!(!is_incomplete("// a comment with {\nlet a = 1;"));
        assert!(!is_incomplete("let c = '{';"));
        assert!(!is_incomplete("}"));
    }

    #[test]
    fn a_dangling_else_or_operator_continues() {
        assert!(is_incomplete("if x { 1 } else"));
        assert!(is_incomplete("let total = a +"));
        assert!(is_incomplete("let xs = users\n  .filter(|u| u.admin)."));
        assert!(is_incomplete("let y = x // a comment\n  ||"));
        assert!(!is_incomplete("let else_branch = 1"));
        assert!(!is_incomplete("let s = \"ends with +\""));
        assert!(!is_incomplete("if x { 1 } else { 2 }"));
        assert!(!is_incomplete("let f = |x| x + 1"));
    }

    #[test]
    fn methods_after_a_dot() {
        assert_eq!(slot("gh.sus", 6), (3, Slot::Method("sus", Receiver::Var("gh"))));
        assert_eq!(slot("connect(\"github\").list_", 23), (18, Slot::Method("list_", Receiver::Profile("github"))));
        assert_eq!(slot("connect().s", 11), (10, Slot::Method("s", Receiver::DefaultProfile)));
        assert_eq!(slot("users[0].l", 10), (9, Slot::Method("l", Receiver::Unknown)));
        assert_eq!(slot("a.b.c", 5), (4, Slot::Method("c", Receiver::Unknown)));
    }

    #[test]
    fn profiles_inside_connect() {
        assert_eq!(slot("let gh = connect(\"gi", 20), (18, Slot::Profile("gi")));
        assert_eq!(slot("connect(\"github\")", 17).1, Slot::Name(""));
    }

    #[test]
    fn names_and_commands() {
        assert_eq!(slot("let u = read_c", 14), (8, Slot::Name("read_c")));
        assert_eq!(slot(":he", 3), (0, Slot::Command(":he")));
        assert_eq!(slot(":help susp", 10), (6, Slot::Help("susp")), ":help takes any function or method name");
    }
}
