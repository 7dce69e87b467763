//! Every external command the repository's scripts call must be in `scripts/commands.tsv`
//! (the one table "command -> Debian package" that `scripts/deps.sh` installs from and the
//! preflight of `lab/lab.sh`, `scripts/test.sh` and `bench/harness.sh` checks against),
//! with the scope of the entry point that runs it.
//!
//! A static scan: the shell scripts under `lab/`, `scripts/`, `tests/e2e/`, `bench/` and
//! `packet-tests/scapy/` are tokenised (quotes, `$(...)`, here-documents, `case` patterns,
//! redirections), split into simple commands, and the command word of each is taken after
//! assignments, keywords and wrappers (`ip netns exec NS`, `timeout 5`, `taskset -c 1`,
//! `flock FILE`, `sh -c '...'`, the scripts' own `nsx NS` and `check NAME`). Builtins,
//! functions defined in the scripts, repository paths and words that are not literal (a
//! variable, a command substitution) are not external commands. Python code (the `.py`
//! files, `python3 -c '...'` and `<<'PY'` here-documents) is scanned for imported modules
//! (`python3:MODULE` entries) and for `subprocess` calls with a literal argument list.
//!
//! It lives in packet-tests, the workspace's crate of repository-level tests, so that
//! `cargo test --workspace` runs it without root and without any of the tools installed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where the scripts live (relative to the repository root).
const SCANNED_DIRS: &[&str] = &["lab", "scripts", "tests/e2e", "bench", "packet-tests/scapy"];

/// The scopes a script's commands belong to: the entry point that runs (or sources) it.
/// A path ending in `/` is a folder prefix. Every scanned script must be in at least one.
const SCOPES: &[(&str, &[&str])] = &[
    ("deps", &["scripts/deps.sh"]),
    // The lab is a cluster: lab.sh runs everything under lab/ (cluster/, checks, topology,
    // and static-lab.sh, the hand-configured lab).
    ("lab", &["lab/", "scripts/preflight.sh"]),
    (
        "test",
        &[
            "scripts/test.sh",
            "scripts/preflight.sh",
            "packet-tests/scapy/",
            "tests/e2e/",
            // tests/e2e/cluster_lab.sh brings the lab cluster up.
            "lab/",
        ],
    ),
    (
        "bench",
        &[
            "bench/",
            "scripts/preflight.sh",
            "lab/netns.sh",
            "lab/topology.sh",
            "tests/e2e/lib/common.sh",
            "tests/e2e/lib/interop.sh",
        ],
    ),
    ("cluster", &["lab/cluster/build-bins.sh"]),
];

const BUILTINS: &[&str] = &[
    ".",
    ":",
    "[",
    "alias",
    "bg",
    "break",
    "builtin",
    "caller",
    "cd",
    "command",
    "compgen",
    "complete",
    "continue",
    "declare",
    "dirs",
    "disown",
    "echo",
    "enable",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "getopts",
    "hash",
    "help",
    "history",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "wait",
];

/// Reserved words after which a command word follows.
const PREFIX_KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "!", "{", "time",
];
/// Reserved words that end a compound command (nothing follows but redirections).
const END_KEYWORDS: &[&str] = &["fi", "done", "esac", "}"];
/// Compound commands whose words are not commands (`for x in a b`, `[[ ... ]]`).
const SKIP_KEYWORDS: &[&str] = &["for", "select", "function", "[[", "]]", "in", "case"];

#[derive(Clone, Debug)]
struct Word {
    /// The word with quotes removed; expansions (`$x`, `$(...)`) kept as written.
    text: String,
    /// No unquoted or double-quoted expansion: the word is what it says.
    lit: bool,
    line: usize,
}

#[derive(Debug)]
enum Tok {
    Word(Word),
    /// `;`, `&`, `|`, `&&`, `||`, newline, `(`, and the edges of a command substitution.
    Sep,
    /// `)`: also ends a `case` pattern.
    RParen,
    /// `;;`: ends a `case` branch.
    CaseSep,
    /// `name() ...`
    FuncDef(String),
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
    toks: Vec<Tok>,
    cur: Option<Word>,
    /// The word that follows is the target of a redirection, not a command word.
    redirect_target: bool,
    heredocs: Vec<(String, bool)>,
    /// Bodies of here-documents whose delimiter starts with PY (Python source).
    python: Vec<(String, usize)>,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str) -> Self {
        Lexer {
            s: s.as_bytes(),
            i: 0,
            line: 1,
            toks: Vec::new(),
            cur: None,
            redirect_target: false,
            heredocs: Vec::new(),
            python: Vec::new(),
        }
    }

    fn peek(&self, k: usize) -> u8 {
        *self.s.get(self.i + k).unwrap_or(&0)
    }

    fn word(&mut self) -> &mut Word {
        let line = self.line;
        self.cur.get_or_insert_with(|| Word {
            text: String::new(),
            lit: true,
            line,
        })
    }

    fn push_char(&mut self, c: u8) {
        self.word().text.push(c as char);
    }

    fn finish(&mut self) {
        if let Some(w) = self.cur.take() {
            if self.redirect_target {
                self.redirect_target = false;
            } else {
                self.toks.push(Tok::Word(w));
            }
        }
    }

    fn sep(&mut self, t: Tok) {
        self.finish();
        self.toks.push(t);
    }

    fn newline(&mut self) {
        self.sep(Tok::Sep);
        self.line += 1;
        self.i += 1;
        let docs = std::mem::take(&mut self.heredocs);
        for (delim, strip) in docs {
            let start_line = self.line;
            let mut body = String::new();
            while self.i < self.s.len() {
                let end = self.s[self.i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(self.s.len(), |p| self.i + p);
                let l = String::from_utf8_lossy(&self.s[self.i..end]).into_owned();
                self.i = (end + 1).min(self.s.len());
                self.line += 1;
                let t = if strip {
                    l.trim_start_matches('\t')
                } else {
                    &l
                };
                if t == delim {
                    break;
                }
                body.push_str(&l);
                body.push('\n');
            }
            if delim.starts_with("PY") {
                self.python.push((body, start_line));
            }
        }
    }

    /// Copies the source from the current position through the matching `close`
    /// (nesting on `open`) into the word, as written.
    fn copy_balanced(&mut self, open: u8, close: u8) {
        let mut depth = 0usize;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            self.push_char(c);
            self.i += 1;
            if c == b'\n' {
                self.line += 1;
            } else if c == b'\\' && self.i < self.s.len() {
                let c2 = self.s[self.i];
                self.push_char(c2);
                self.i += 1;
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return;
                }
            }
        }
    }

    /// At `$`: an expansion. Command substitutions are lexed as commands of their own.
    fn dollar(&mut self) {
        let n = self.peek(1);
        if n == b'(' && self.peek(2) == b'(' {
            self.word().lit = false;
            self.i += 1;
            self.push_char(b'$');
            self.copy_balanced(b'(', b')');
        } else if n == b'(' {
            self.word().lit = false;
            let saved = self.cur.take();
            self.i += 2;
            self.nested(b')');
            self.cur = saved;
            self.word().text.push_str("$(...)");
        } else if n == b'{' {
            self.word().lit = false;
            self.i += 1;
            self.push_char(b'$');
            self.copy_balanced(b'{', b'}');
        } else if n == b'\'' {
            self.i += 2;
            self.single_quoted();
        } else if n.is_ascii_alphanumeric() || b"_@*#?$!-".contains(&n) {
            self.word().lit = false;
            self.push_char(b'$');
            self.i += 1;
            if n.is_ascii_alphabetic() || n == b'_' {
                while self.peek(0).is_ascii_alphanumeric() || self.peek(0) == b'_' {
                    self.push_char(self.peek(0));
                    self.i += 1;
                }
            } else {
                self.push_char(n);
                self.i += 1;
            }
        } else {
            self.push_char(b'$');
            self.i += 1;
        }
    }

    fn single_quoted(&mut self) {
        self.word();
        while self.i < self.s.len() && self.s[self.i] != b'\'' {
            if self.s[self.i] == b'\n' {
                self.line += 1;
            }
            self.push_char(self.s[self.i]);
            self.i += 1;
        }
        self.i += 1;
    }

    fn double_quoted(&mut self) {
        self.word();
        while self.i < self.s.len() {
            match self.s[self.i] {
                b'"' => {
                    self.i += 1;
                    return;
                }
                b'\\' => {
                    let n = self.peek(1);
                    if b"$`\"\\\n".contains(&n) {
                        if n == b'\n' {
                            self.line += 1;
                        } else {
                            self.push_char(n);
                        }
                        self.i += 2;
                    } else {
                        self.push_char(b'\\');
                        self.i += 1;
                    }
                }
                b'$' => self.dollar(),
                b'`' => self.backtick(),
                c => {
                    if c == b'\n' {
                        self.line += 1;
                    }
                    self.push_char(c);
                    self.i += 1;
                }
            }
        }
    }

    fn backtick(&mut self) {
        self.word().lit = false;
        let saved = self.cur.take();
        self.i += 1;
        self.nested(b'`');
        self.cur = saved;
        self.word().text.push_str("$(...)");
    }

    /// At `<` or `>` (after an optional `&`): a redirection, here-document or process
    /// substitution.
    fn redirect(&mut self) {
        // A file descriptor number right before the operator belongs to it.
        if self.cur.as_ref().is_some_and(|w| {
            w.lit && !w.text.is_empty() && w.text.bytes().all(|b| b.is_ascii_digit())
        }) {
            self.cur = None;
        }
        self.finish();
        let c = self.peek(0);
        if self.peek(1) == b'(' {
            // <(cmd) >(cmd): the commands run; as a redirection target it is consumed.
            self.i += 2;
            self.nested(b')');
            self.redirect_target = false;
            return;
        }
        if c == b'<' && self.peek(1) == b'<' && self.peek(2) == b'<' {
            self.i += 3;
            self.redirect_target = true;
            return;
        }
        if c == b'<' && self.peek(1) == b'<' {
            self.i += 2;
            let strip = self.peek(0) == b'-';
            if strip {
                self.i += 1;
            }
            while self.peek(0) == b' ' {
                self.i += 1;
            }
            let mut delim = String::new();
            while self.i < self.s.len() && !b" \t\n;|&<>)".contains(&self.s[self.i]) {
                let c = self.s[self.i];
                if c != b'\'' && c != b'"' && c != b'\\' {
                    delim.push(c as char);
                }
                self.i += 1;
            }
            self.heredocs.push((delim, strip));
            return;
        }
        self.i += 1;
        if b">&|".contains(&self.peek(0)) {
            self.i += 1;
        }
        self.redirect_target = true;
    }

    /// A nested command list (`$(...)`, backticks, `<(...)`), lexed up to `end`.
    fn nested(&mut self, end: u8) {
        let target = std::mem::replace(&mut self.redirect_target, false);
        self.toks.push(Tok::Sep);
        self.run(Some(end));
        self.toks.push(Tok::Sep);
        self.redirect_target = target;
    }

    /// Lexes until `end` (the `)` of a command substitution, a closing backtick) or EOF.
    fn run(&mut self, end: Option<u8>) {
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if Some(c) == end {
                self.finish();
                self.i += 1;
                return;
            }
            match c {
                b' ' | b'\t' | b'\r' => {
                    self.finish();
                    self.i += 1;
                }
                b'\\' if self.peek(1) == b'\n' => {
                    self.finish();
                    self.i += 2;
                    self.line += 1;
                }
                b'\\' => {
                    self.push_char(self.peek(1));
                    self.i += 2;
                }
                b'\n' => self.newline(),
                b'#' if self.cur.is_none() => {
                    while self.i < self.s.len() && self.s[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                b'\'' => {
                    self.i += 1;
                    self.single_quoted();
                }
                b'"' => {
                    self.i += 1;
                    self.double_quoted();
                }
                b'$' => self.dollar(),
                b'`' => self.backtick(),
                b';' => {
                    if self.peek(1) == b';' {
                        self.i += 2;
                        if self.peek(0) == b'&' {
                            self.i += 1;
                        }
                        self.sep(Tok::CaseSep);
                    } else {
                        self.i += 1;
                        self.sep(Tok::Sep);
                    }
                }
                b'&' if self.peek(1) == b'>' => {
                    self.i += 1;
                    self.redirect();
                }
                b'&' | b'|' => {
                    self.i += 1;
                    if b"&|".contains(&self.peek(0)) {
                        self.i += 1;
                    }
                    self.sep(Tok::Sep);
                }
                b'<' | b'>' => self.redirect(),
                b'(' => {
                    if self.cur.as_ref().is_some_and(|w| w.text.ends_with('=')) {
                        // An array assignment: name=(a b c).
                        self.word().lit = false;
                        self.copy_balanced(b'(', b')');
                        continue;
                    }
                    let mut k = 1;
                    while self.peek(k) == b' ' {
                        k += 1;
                    }
                    if self.peek(k) == b')' {
                        // name() { ...: a function definition.
                        self.finish();
                        if let Some(Tok::Word(w)) = self.toks.last() {
                            let name = w.text.clone();
                            self.toks.pop();
                            self.toks.push(Tok::FuncDef(name));
                        }
                        self.i += k + 1;
                    } else if self.peek(1) == b'(' && self.cur.is_none() {
                        // (( arithmetic ))
                        self.word().lit = false;
                        self.copy_balanced(b'(', b')');
                        self.cur = None;
                    } else {
                        self.i += 1;
                        self.sep(Tok::Sep);
                    }
                }
                b')' => {
                    self.i += 1;
                    self.sep(Tok::RParen);
                }
                _ => {
                    self.push_char(c);
                    self.i += 1;
                }
            }
        }
        self.finish();
    }
}

/// A command found in a script: the name and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    name: String,
    line: usize,
}

struct Scan {
    calls: Vec<Call>,
    funcs: BTreeSet<String>,
    /// Python sources found in the script (here-documents, `python3 -c`).
    python: Vec<(String, usize)>,
}

fn lex(src: &str) -> (Vec<Tok>, Vec<(String, usize)>) {
    let mut lx = Lexer::new(src);
    lx.run(None);
    (lx.toks, lx.python)
}

/// Splits tokens into simple commands (skipping `case` patterns) and collects function
/// definitions.
fn simple_commands(toks: Vec<Tok>) -> (Vec<Vec<Word>>, BTreeSet<String>) {
    let mut cmds = Vec::new();
    let mut funcs = BTreeSet::new();
    let mut cmd: Vec<Word> = Vec::new();
    let mut case_depth = 0usize;
    let mut case_header = false;
    let mut pattern = false;
    // Inside [[ ... ]]: `|`, `&&`, `(` are part of the test.
    let mut dbracket = false;
    let flush = |cmd: &mut Vec<Word>, cmds: &mut Vec<Vec<Word>>| {
        if !cmd.is_empty() {
            cmds.push(std::mem::take(cmd));
        }
    };
    for t in toks {
        match t {
            Tok::Word(w) => {
                if dbracket {
                    dbracket = !(w.lit && w.text == "]]");
                    continue;
                }
                if pattern {
                    if w.lit && w.text == "esac" {
                        pattern = false;
                        case_depth = case_depth.saturating_sub(1);
                    }
                    continue;
                }
                let at_command = cmd
                    .iter()
                    .all(|x| x.lit && PREFIX_KEYWORDS.contains(&x.text.as_str()));
                if at_command && w.lit && w.text == "[[" {
                    dbracket = true;
                    continue;
                }
                if at_command && w.lit && w.text == "case" {
                    case_header = true;
                    case_depth += 1;
                }
                if case_header && w.lit && w.text == "in" {
                    case_header = false;
                    pattern = true;
                    cmd.clear();
                    continue;
                }
                cmd.push(w);
            }
            Tok::Sep | Tok::RParen if dbracket => {}
            Tok::RParen => {
                if pattern {
                    pattern = false;
                } else {
                    flush(&mut cmd, &mut cmds);
                }
            }
            Tok::CaseSep => {
                flush(&mut cmd, &mut cmds);
                if case_depth > 0 {
                    pattern = true;
                }
            }
            Tok::Sep => {
                if !pattern {
                    flush(&mut cmd, &mut cmds);
                }
            }
            Tok::FuncDef(name) => {
                cmd.clear();
                funcs.insert(name);
            }
        }
    }
    flush(&mut cmd, &mut cmds);
    (cmds, funcs)
}

fn is_assignment(w: &Word) -> bool {
    let Some(eq) = w.text.find('=') else {
        return false;
    };
    let name = w.text[..eq].trim_end_matches('+');
    let name = name.split('[').next().unwrap_or("");
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Skips a wrapper's options: `-x`, and `-x VALUE` for the options in `with_value`.
fn skip_options<'w>(mut rest: &'w [Word], with_value: &[&str]) -> &'w [Word] {
    while let Some(w) = rest.first() {
        if w.text == "--" {
            return &rest[1..];
        }
        if !w.text.starts_with('-') || w.text == "-" {
            break;
        }
        let takes = with_value.contains(&w.text.as_str());
        rest = &rest[if takes { 2 } else { 1 }.min(rest.len())..];
    }
    rest
}

/// The external commands a simple command runs (the command word, and the command a
/// wrapper runs).
fn commands_of(
    words: &[Word],
    funcs: &BTreeSet<String>,
    out: &mut Vec<Call>,
    py: &mut Vec<(String, usize)>,
) {
    let mut rest = words;
    while let Some(w) = rest.first() {
        if (w.lit && PREFIX_KEYWORDS.contains(&w.text.as_str())) || is_assignment(w) {
            rest = &rest[1..];
        } else {
            break;
        }
    }
    // "${TOOL[@]}" cmd ...: an array holding a command prefix (taskset -c 1); what follows
    // is still run.
    while rest.first().is_some_and(|w| {
        w.text.starts_with("${") && w.text.ends_with("[@]}") && !w.text.contains(' ')
    }) {
        rest = &rest[1..];
    }
    let Some(w) = rest.first() else { return };
    let name = w.text.as_str();
    if !w.lit || END_KEYWORDS.contains(&name) || SKIP_KEYWORDS.contains(&name) || name.is_empty() {
        return;
    }
    let args = &rest[1..];
    let arg = |i: usize| args.get(i).map_or("", |a| a.text.as_str());
    // Wrappers: the command they run is a call too.
    let inner: Option<&[Word]> = match name {
        "exec" | "command" | "builtin" | "nohup" | "setsid" => Some(skip_options(args, &[])),
        "nsx" | "nsx_t" | "check" | "check_fails" => args.get(1..),
        "timeout" => skip_options(args, &["-s", "-k", "--signal", "--kill-after"]).get(1..),
        "taskset" => {
            let r = skip_options(args, &[]);
            if args.first().is_some_and(|a| a.text.starts_with('-')) {
                Some(r.get(1..).unwrap_or(&[]))
            } else {
                r.get(1..)
            }
        }
        "flock" => skip_options(args, &["-w", "-E", "--timeout", "--conflict-exit-code"]).get(1..),
        "env" => {
            let mut r = skip_options(args, &["-u", "-C", "-S"]);
            while r.first().is_some_and(is_assignment) {
                r = &r[1..];
            }
            Some(r)
        }
        "xargs" => Some(skip_options(
            args,
            &["-n", "-I", "-P", "-d", "-L", "-s", "-a", "-E"],
        )),
        "ip" if arg(0) == "netns" && arg(1) == "exec" => args.get(3..),
        "sh" | "bash" if arg(0) == "-c" => {
            if let Some(script) = args.get(1) {
                let (toks, p) = lex(&script.text);
                py.extend(p);
                let (cmds, _) = simple_commands(toks);
                for c in cmds {
                    let mut sub = Vec::new();
                    commands_of(&c, funcs, &mut sub, py);
                    out.extend(sub.into_iter().map(|c| Call { line: w.line, ..c }));
                }
            }
            None
        }
        "python3" | "python" if arg(0) == "-c" => {
            if let Some(src) = args.get(1) {
                py.push((src.text.clone(), w.line));
            }
            None
        }
        _ => None,
    };
    if name.contains('/') {
        // A repository script (lab/netns.sh, ./scripts/deps.sh): not a package's command.
        // An absolute path is a system command all the same.
        if name.starts_with('/') {
            out.push(Call {
                name: name.rsplit('/').next().unwrap_or(name).to_string(),
                line: w.line,
            });
        }
    } else if !BUILTINS.contains(&name) && !funcs.contains(name) {
        out.push(Call {
            name: name.to_string(),
            line: w.line,
        });
    }
    if let Some(inner) = inner {
        commands_of(inner, funcs, out, py);
    }
}

/// Top-level modules a piece of Python imports.
fn python_imports(src: &str) -> BTreeSet<String> {
    let mut mods = BTreeSet::new();
    for stmt in src.split(['\n', ';']) {
        let s = stmt.trim();
        let list = if let Some(r) = s.strip_prefix("import ") {
            r
        } else if let Some(r) = s.strip_prefix("from ") {
            r.split(" import").next().unwrap_or("")
        } else {
            continue;
        };
        for m in list.split(',') {
            let m = m.split_whitespace().next().unwrap_or("");
            let top = m.split('.').next().unwrap_or("");
            if !top.is_empty() && top.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                mods.insert(top.to_string());
            }
        }
    }
    mods
}

/// `subprocess.run(["ip", "netns", "exec", ns, "cat", path])`: the literal argument list as
/// words (anything that is not a string literal is not literal).
fn python_subprocess_calls(src: &str, base_line: usize) -> Vec<Vec<Word>> {
    let mut out = Vec::new();
    for f in ["run(", "Popen(", "check_output(", "check_call(", "call("] {
        let pat = format!("subprocess.{f}");
        let mut from = 0;
        while let Some(p) = src[from..].find(&pat) {
            let start = from + p + pat.len();
            from = start;
            let rest = src[start..].trim_start();
            let Some(list) = rest.strip_prefix('[') else {
                continue;
            };
            let Some(end) = list.find(']') else { continue };
            let line = base_line + src[..start].matches('\n').count();
            let words = list[..end]
                .split(',')
                .map(|a| {
                    let a = a.trim();
                    let lit = a.len() >= 2
                        && (a.starts_with('"') && a.ends_with('"')
                            || a.starts_with('\'') && a.ends_with('\''));
                    Word {
                        text: if lit {
                            a[1..a.len() - 1].to_string()
                        } else {
                            a.to_string()
                        },
                        lit,
                        line,
                    }
                })
                .collect();
            out.push(words);
        }
    }
    out
}

fn scan_shell(src: &str, funcs: &BTreeSet<String>) -> Scan {
    let (toks, mut python) = lex(src);
    let (cmds, own) = simple_commands(toks);
    let mut all = funcs.clone();
    all.extend(own.iter().cloned());
    let mut calls = Vec::new();
    for c in &cmds {
        commands_of(c, &all, &mut calls, &mut python);
    }
    Scan {
        calls,
        funcs: own,
        python,
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("sh") | Some("py")
        ) {
            out.push(p);
        }
    }
}

/// One row of scripts/commands.tsv.
#[derive(Debug)]
struct Entry {
    package: String,
    scopes: BTreeSet<String>,
}

fn table(text: &str) -> BTreeMap<String, Entry> {
    let mut t = BTreeMap::new();
    for (n, l) in text.lines().enumerate() {
        let l = l.trim_end();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = l.split('\t').filter(|s| !s.is_empty()).collect();
        assert!(
            f.len() >= 3,
            "scripts/commands.tsv:{}: want COMMAND<TAB>PACKAGE<TAB>SCOPES: {l:?}",
            n + 1
        );
        let prev = t.insert(
            f[0].to_string(),
            Entry {
                package: f[1].to_string(),
                scopes: f[2].split(',').map(str::to_string).collect(),
            },
        );
        assert!(
            prev.is_none(),
            "scripts/commands.tsv:{}: {} twice",
            n + 1,
            f[0]
        );
    }
    t
}

/// Every call in every scanned script, as (relative path, line, key in the table).
/// `extra` = (path, text) appends text to one script (for testing the test).
fn scan_repo(root: &Path, extra: Option<(&str, &str)>) -> Vec<(String, usize, String)> {
    let mut paths = Vec::new();
    for d in SCANNED_DIRS {
        files(&root.join(d), &mut paths);
    }
    let rel = |p: &Path| p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
    let srcs: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let path = rel(p);
            let mut src = std::fs::read_to_string(p).expect("readable script");
            if let Some((_, text)) = extra.filter(|(x, _)| *x == path) {
                src.push_str(text);
            }
            (path, src)
        })
        .collect();
    // Functions defined in any script (lib files define what the tests call).
    let mut funcs = BTreeSet::new();
    for (path, src) in &srcs {
        if path.ends_with(".sh") {
            funcs.extend(scan_shell(src, &BTreeSet::new()).funcs);
        }
    }
    let mut found = Vec::new();
    for (path, src) in &srcs {
        let mut python = Vec::new();
        if path.ends_with(".sh") {
            let s = scan_shell(src, &funcs);
            found.extend(s.calls.into_iter().map(|c| (path.clone(), c.line, c.name)));
            python = s.python;
        } else {
            python.push((src.clone(), 1));
        }
        for (py, line) in python {
            for m in python_imports(&py) {
                found.push((path.clone(), line, format!("python3:{m}")));
            }
            for words in python_subprocess_calls(&py, line) {
                let mut calls = Vec::new();
                commands_of(&words, &BTreeSet::new(), &mut calls, &mut Vec::new());
                found.extend(calls.into_iter().map(|c| (path.clone(), c.line, c.name)));
            }
        }
        if path.ends_with(".sh") {
            found.push((path.clone(), 1, "bash".into()));
        } else {
            found.push((path.clone(), 1, "python3".into()));
        }
    }
    found
}

fn scopes_of(path: &str) -> Vec<&'static str> {
    SCOPES
        .iter()
        .filter(|(_, pats)| {
            pats.iter().any(|p| {
                if p.ends_with('/') {
                    path.starts_with(p)
                } else {
                    path == *p
                }
            })
        })
        .map(|(s, _)| *s)
        .collect()
}

/// What is wrong: calls missing from the table, or whose row lacks the script's scope.
fn problems(root: &Path, extra: Option<(&str, &str)>) -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(root.join("scripts/commands.tsv")).expect("scripts/commands.tsv");
    let t = table(&text);
    let mut problems = BTreeSet::new();
    let found = scan_repo(root, extra);
    assert!(
        found.len() > 100,
        "the scan found almost nothing: {found:?}"
    );
    for (path, line, cmd) in &found {
        let scopes = scopes_of(path);
        if scopes.is_empty() {
            problems.insert(format!(
                "{path}: not in any scope of tests/script_commands.rs SCOPES (which entry point runs it?)"
            ));
            continue;
        }
        match t.get(cmd) {
            None => {
                problems.insert(format!(
                    "{path}:{line}: `{cmd}` is not in scripts/commands.tsv (add: {cmd}<TAB>DEBIAN-PACKAGE<TAB>{})",
                    scopes.join(",")
                ));
            }
            Some(e) => {
                let missing: Vec<_> = scopes.iter().filter(|s| !e.scopes.contains(**s)).collect();
                if !missing.is_empty() {
                    problems.insert(format!(
                        "{path}:{line}: `{cmd}` ({}) lacks scope(s) {missing:?} in scripts/commands.tsv",
                        e.package
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn every_script_command_is_in_the_table() {
    let problems = problems(&root(), None);
    assert!(
        problems.is_empty(),
        "\n{}",
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn table_scopes_and_packages_are_known() {
    let root = root();
    let text = std::fs::read_to_string(root.join("scripts/commands.tsv")).unwrap();
    let known: BTreeSet<&str> = SCOPES.iter().map(|(s, _)| *s).collect();
    for (cmd, e) in table(&text) {
        for s in &e.scopes {
            assert!(known.contains(s.as_str()), "{cmd}: unknown scope {s}");
        }
        assert!(
            e.package == "-"
                || e.package == "rustup"
                || e.package
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)),
            "{cmd}: {:?} is not a Debian package name",
            e.package
        );
    }
}

fn calls_in(src: &str) -> Vec<String> {
    let funcs = scan_shell(src, &BTreeSet::new()).funcs;
    let s = scan_shell(src, &funcs);
    let mut v: Vec<String> = s.calls.into_iter().map(|c| c.name).collect();
    for (py, _) in s.python {
        v.extend(
            python_imports(&py)
                .into_iter()
                .map(|m| format!("python3:{m}")),
        );
    }
    v
}

#[test]
fn the_scan_sees_commands_where_the_shell_runs_them() {
    let src = r#"#!/usr/bin/env bash
# a comment: notacommand here
set -euo pipefail
pkgs=(iproute2 iperf3
      tshark)
helper() { local x=$1; echo "$x"; }
X=1 Y="$(date +%s)" mktemp -d >"$OUT" 2>&1
ip netns exec "$ns" ping -c 1 10.0.0.1 | grep -q ttl && ethtool -K eth0 tx off
out=$(timeout 5 nc -z 10.0.0.1 80 2>&1 || true)
echo "detail: $(ss -tn | wc -l)"
"$BIN/podswitchctl" dump flows; ./scripts/deps.sh; lab/netns.sh
while read -r a b; do helper "$a"; done < <(awk '{print}' file)
case "${1:-up}" in
  up) iperf3 -c x ;;
  down|off) tcpdump -i any ;;
  *) echo usage ;;
esac
if [ -x /usr/bin/foo ]; then taskset -c 1 trafgen --cpu 1; fi
nsx "$A" "${TOOL[@]}" timeout -s INT 5 mausezahn eth0
check() { shift; "$@"; }
cat >"$f" <<'PY'
import scapy.all, json
notacommand --in-heredoc
PY
check "a check" conntrack -L
sh -c "nft list ruleset | tail -1"
python3 -c 'import matplotlib; print(1)'
for t in notacommand_either other; do :; done
[[ $x == a|b ]] && bpftool prog
echo $((1 + 2)) x >/dev/null
"#;
    let got = calls_in(src);
    let want = [
        "date",
        "mktemp",
        "ip",
        "ping",
        "grep",
        "ethtool",
        "timeout",
        "nc",
        "ss",
        "wc",
        "awk",
        "iperf3",
        "tcpdump",
        "taskset",
        "trafgen",
        "mausezahn",
        "cat",
        "conntrack",
        "sh",
        "nft",
        "tail",
        "python3",
        "bpftool",
    ];
    for w in want {
        assert!(got.iter().any(|g| g == w), "{w} not found in {got:?}");
    }
    for g in &got {
        assert!(
            ![
                "notacommand",
                "helper",
                "iproute2",
                "tshark",
                "up",
                "down",
                "off",
                "other",
                "local",
                "echo",
                "[",
                "in"
            ]
            .contains(&g.as_str())
                && !g.contains('$')
                && !g.contains('/'),
            "{g} is not a command: {got:?}"
        );
    }
    for m in ["python3:scapy", "python3:json", "python3:matplotlib"] {
        assert!(got.iter().any(|g| g == m), "{m} not found in {got:?}");
    }
}

#[test]
fn an_unknown_tool_in_a_script_is_caught() {
    // The repository's own check, with one more line in a test script and in the lab.
    let root = root();
    let got = problems(
        &root,
        Some((
            "tests/e2e/pmtu.sh",
            "\nout=$(nsx_t \"$P-n1-a\" timeout 5 frobnicate-tool --now 2>&1)\n",
        )),
    );
    assert_eq!(got.len(), 1, "{got:?}");
    let p = got.iter().next().unwrap();
    assert!(
        p.starts_with("tests/e2e/pmtu.sh:") && p.contains("`frobnicate-tool` is not in"),
        "{p}"
    );
    // A known tool in a scope its row does not have: mergecap is not a lab tool.
    let got = problems(
        &root,
        Some(("lab/lab.sh", "\nip netns exec x mergecap -w f a b\n")),
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got.iter()
            .next()
            .unwrap()
            .contains("lacks scope(s) [\"lab\"]"),
        "{got:?}"
    );
}

#[test]
fn readme_names_the_packages_of_the_two_commands() {
    let root = root();
    let t = table(&std::fs::read_to_string(root.join("scripts/commands.tsv")).unwrap());
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    // scripts/deps.sh without arguments: the scopes of lab/lab.sh and scripts/test.sh.
    {
        let cmd = "scripts/deps.sh";
        let start = readme
            .find("- `scripts/deps.sh` (run by `lab/lab.sh` and `scripts/test.sh`)")
            .expect("README lists the packages of the two commands");
        let item: String = readme[start + 2..]
            .split("\n- ")
            .next()
            .unwrap()
            .split("\n\n")
            .next()
            .unwrap()
            .replace('\n', " ");
        let named: BTreeSet<&str> = item
            .split([',', ' ', ':', '(', ')', '`'])
            .map(|w| w.trim_end_matches('.'))
            .filter(|w| !w.is_empty())
            .collect();
        let want: BTreeSet<&str> = t
            .values()
            .filter(|e| {
                ["deps", "lab", "test"]
                    .iter()
                    .any(|s| e.scopes.contains(*s))
            })
            .map(|e| e.package.as_str())
            .filter(|p| *p != "-" && *p != "rustup")
            .collect();
        let missing: Vec<_> = want.iter().filter(|p| !named.contains(*p)).collect();
        assert!(
            missing.is_empty(),
            "README's packages for {cmd} lack {missing:?}"
        );
        let extra: Vec<_> = named
            .iter()
            .filter(|w| {
                w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && w.contains('-')
                    && !want.contains(*w)
            })
            .collect();
        assert!(
            extra.is_empty(),
            "README's packages for {cmd} name {extra:?}, not in the table"
        );
    }
}
