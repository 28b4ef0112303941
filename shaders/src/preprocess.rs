//! A small preprocessor that composes WGSL variants from readable sources.
//!
//! Directives (a line whose first non-blank character is `#`):
//! - `#include "path.wgsl"`: text of another file under `wgsl/`; `{NAME}` in the path is
//!   replaced by the define's value. A file is included at most once per composition.
//! - `#define NAME value`
//! - `#if EXPR`, `#elif EXPR`, `#else`, `#endif`, `#ifdef NAME`, `#ifndef NAME`.
//!   EXPR has `||`, `&&`, `!`, parentheses, `defined(NAME)`, and comparisons
//!   `== != < > <= >=` between names and literals (numbers compare as integers).
//!   An undefined name in an expression is an error, so a misspelt define cannot
//!   silently select the wrong branch.
//!
//! Outside directives, every identifier that names a define is replaced by its value.
//! The output keeps a map from each output line back to its file and line, so naga's
//! errors can be reported where the code was written.

use std::collections::{BTreeMap, BTreeSet};

use crate::ShaderError;

/// Composed WGSL plus where each of its lines came from.
#[derive(Clone, Debug)]
pub struct Composed {
    pub code: String,
    /// For output line `i` (0-based), the source file and 1-based line number.
    pub line_map: Vec<(String, u32)>,
}

impl Composed {
    /// The source file and line of a 1-based output line.
    pub fn origin(&self, output_line: usize) -> Option<(&str, u32)> {
        self.line_map
            .get(output_line.checked_sub(1)?)
            .map(|(f, l)| (f.as_str(), *l))
    }
}

/// Source files by path: `(path, text)` pairs.
pub type Sources<'a> = &'a [(&'a str, &'a str)];

struct Frame {
    /// Whether the enclosing region is emitting.
    parent_active: bool,
    /// Whether some branch of this `#if` chain has already been taken.
    taken: bool,
    /// Whether the current branch emits.
    active: bool,
    seen_else: bool,
    line: u32,
}

struct State<'a> {
    sources: Sources<'a>,
    defines: BTreeMap<String, String>,
    included: BTreeSet<String>,
    out: Composed,
}

/// Composes `entry` with the given defines.
pub fn preprocess(
    sources: Sources<'_>,
    entry: &str,
    defines: &[(&str, &str)],
) -> Result<Composed, ShaderError> {
    let mut state = State {
        sources,
        defines: defines
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        included: BTreeSet::new(),
        out: Composed {
            code: String::new(),
            line_map: Vec::new(),
        },
    };
    process_file(&mut state, entry, None)?;
    Ok(state.out)
}

fn err(file: &str, line: u32, message: impl Into<String>) -> ShaderError {
    ShaderError {
        file: file.to_string(),
        line,
        message: message.into(),
    }
}

/// Appends `path`, composed, to `state.out` (nothing if it was already included); `from`
/// is the `#include` that asked for it.
fn process_file(
    state: &mut State<'_>,
    path: &str,
    from: Option<(&str, u32)>,
) -> Result<(), ShaderError> {
    if !state.included.insert(path.to_string()) {
        return Ok(());
    }
    let text = find_source(state.sources, path, from)?;
    let mut conditionals = Conditionals::default();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx as u32 + 1;
        let active = conditionals.active();
        if let Some(directive) = raw.trim_start().strip_prefix('#') {
            let (word, rest) = split_first_word(directive.trim());
            let at = (path, line_no);
            // Conditionals are tracked even inside an inactive region; the other
            // directives (unknown ones included) only count where the region emits.
            if !conditionals.apply(word, rest, &state.defines, at)? && active {
                apply_directive(state, word, rest, at)?;
            }
            continue;
        }
        if active {
            state.out.code.push_str(&substitute(raw, &state.defines));
            state.out.code.push('\n');
            state.out.line_map.push((path.to_string(), line_no));
        }
    }
    conditionals.check_closed(path)
}

/// The text of `path`; the error names the `#include` that asked for it, if any.
fn find_source<'a>(
    sources: Sources<'a>,
    path: &str,
    from: Option<(&str, u32)>,
) -> Result<&'a str, ShaderError> {
    sources
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, t)| *t)
        .ok_or_else(|| match from {
            Some((f, l)) => err(f, l, format!("included file {path:?} does not exist")),
            None => err(path, 0, "shader file does not exist"),
        })
}

/// `word rest`: the text up to the first whitespace, and the rest trimmed.
fn split_first_word(text: &str) -> (&str, &str) {
    match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim()),
        None => (text, ""),
    }
}

/// The open `#if` chains of one file, innermost last.
#[derive(Default)]
struct Conditionals {
    frames: Vec<Frame>,
}

impl Conditionals {
    /// Whether lines here are emitted.
    fn active(&self) -> bool {
        self.frames.last().is_none_or(|f| f.active)
    }

    /// Applies `#word rest` if it is `#if`, `#ifdef`, `#ifndef`, `#elif`, `#else` or
    /// `#endif`, found at `(path, line_no)`; returns whether it was one of them.
    fn apply(
        &mut self,
        word: &str,
        rest: &str,
        defines: &BTreeMap<String, String>,
        (path, line_no): (&str, u32),
    ) -> Result<bool, ShaderError> {
        let at = |m: &str| err(path, line_no, m);
        let eval_here = |expr| eval(expr, defines).map_err(|m| err(path, line_no, m));
        match word {
            "if" | "ifdef" | "ifndef" => {
                let active = self.active();
                let cond = active
                    && match word {
                        "if" => eval_here(rest)?,
                        "ifdef" => defines.contains_key(rest),
                        _ => !defines.contains_key(rest),
                    };
                self.frames.push(Frame {
                    parent_active: active,
                    taken: cond,
                    active: cond,
                    seen_else: false,
                    line: line_no,
                });
            }
            "elif" => {
                let frame = self
                    .frames
                    .last_mut()
                    .ok_or_else(|| at("#elif without #if"))?;
                if frame.seen_else {
                    return Err(at("#elif after #else"));
                }
                if frame.parent_active && !frame.taken {
                    let cond = eval_here(rest)?;
                    frame.active = cond;
                    frame.taken = cond;
                } else {
                    frame.active = false;
                }
            }
            "else" => {
                let frame = self
                    .frames
                    .last_mut()
                    .ok_or_else(|| at("#else without #if"))?;
                if frame.seen_else {
                    return Err(at("second #else"));
                }
                frame.seen_else = true;
                frame.active = frame.parent_active && !frame.taken;
                frame.taken = true;
            }
            "endif" => {
                self.frames.pop().ok_or_else(|| at("#endif without #if"))?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// An error at the innermost `#if` left open at the end of `path`.
    fn check_closed(&self, path: &str) -> Result<(), ShaderError> {
        match self.frames.last() {
            Some(frame) => Err(err(path, frame.line, "#if without #endif")),
            None => Ok(()),
        }
    }
}

/// Applies a directive other than a conditional, in a region that emits.
fn apply_directive(
    state: &mut State<'_>,
    word: &str,
    rest: &str,
    (path, line_no): (&str, u32),
) -> Result<(), ShaderError> {
    match word {
        "include" => {
            let target = rest
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .ok_or_else(|| err(path, line_no, "expected #include \"file.wgsl\""))?;
            let target =
                substitute_path(target, &state.defines).map_err(|m| err(path, line_no, m))?;
            process_file(state, &target, Some((path, line_no)))
        }
        "define" => {
            let (name, value) = split_first_word(rest);
            if !is_ident(name) {
                return Err(err(path, line_no, format!("bad define name {name:?}")));
            }
            let value = substitute(value, &state.defines);
            state.defines.insert(name.to_string(), value);
            Ok(())
        }
        "error" => Err(err(path, line_no, format!("#error {rest}"))),
        other => Err(err(path, line_no, format!("unknown directive #{other}"))),
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_ident_char) && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Replaces every identifier that names a define by its value. Comments are left alone
/// so a define named like a word in a comment does not matter there.
fn substitute(line: &str, defines: &BTreeMap<String, String>) -> String {
    let (code, comment) = match line.find("//") {
        Some(i) => line.split_at(i),
        None => (line, ""),
    };
    let mut out = String::with_capacity(line.len());
    let mut chars = code.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_ascii_alphabetic() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if is_ident_char(d) {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &code[i..end];
            match defines.get(word) {
                Some(v) => out.push_str(v),
                None => out.push_str(word),
            }
        } else if c.is_ascii_digit() {
            // A number literal (possibly with a suffix like `8u`): never substituted.
            let mut end = i + 1;
            while let Some(&(j, d)) = chars.peek() {
                if is_ident_char(d) || d == '.' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push_str(&code[i..end]);
        } else {
            out.push(c);
        }
    }
    out.push_str(comment);
    out
}

fn substitute_path(path: &str, defines: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in include path {path:?}"))?;
        let name = &rest[open + 1..open + close];
        let value = defines
            .get(name)
            .ok_or_else(|| format!("include path {path:?} uses undefined {name}"))?;
        out.push_str(value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

// ---- #if expressions -------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Op(&'static str),
}

fn tokenize(expr: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    const OPS: [&str; 12] = [
        "||", "&&", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", ",",
    ];
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (is_ident_char(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            toks.push(Tok::Num(chars[start..i].iter().collect()));
        } else {
            let rest: String = chars[i..].iter().take(2).collect();
            let op = OPS
                .iter()
                .find(|op| rest.starts_with(**op))
                .ok_or_else(|| format!("unexpected {c:?} in #if expression {expr:?}"))?;
            toks.push(Tok::Op(op));
            i += op.len();
        }
    }
    Ok(toks)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    defines: &'a BTreeMap<String, String>,
    expr: &'a str,
    /// Above zero while parsing an operand whose value cannot matter (`&&` after a
    /// false operand, `||` after a true one): undefined names are allowed there, so
    /// `defined(KV) && KV == f16` works where KV is not defined.
    skipping: u32,
}

/// A value in an `#if` expression: the text of a define or literal.
#[derive(Debug, Clone)]
struct Val(String);

impl Val {
    fn truthy(&self) -> bool {
        !matches!(self.0.as_str(), "" | "0" | "false")
    }
    fn bool(b: bool) -> Val {
        Val(if b { "1" } else { "0" }.to_string())
    }
    fn int(&self) -> Option<i64> {
        self.0.trim_end_matches(['u', 'i']).parse().ok()
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn eat(&mut self, op: &str) -> bool {
        if self.peek()
            == Some(&Tok::Op(match op {
                "||" => "||",
                "&&" => "&&",
                "!" => "!",
                "(" => "(",
                ")" => ")",
                _ => return false,
            }))
        {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn or(&mut self) -> Result<Val, String> {
        let mut v = self.and()?;
        while self.eat("||") {
            let skip = v.truthy();
            self.skipping += skip as u32;
            let r = self.and();
            self.skipping -= skip as u32;
            v = Val::bool(v.truthy() || r?.truthy());
        }
        Ok(v)
    }
    fn and(&mut self) -> Result<Val, String> {
        let mut v = self.unary()?;
        while self.eat("&&") {
            let skip = !v.truthy();
            self.skipping += skip as u32;
            let r = self.unary();
            self.skipping -= skip as u32;
            v = Val::bool(v.truthy() && r?.truthy());
        }
        Ok(v)
    }
    fn unary(&mut self) -> Result<Val, String> {
        if self.eat("!") {
            return Ok(Val::bool(!self.unary()?.truthy()));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Val, String> {
        let l = self.term()?;
        let op = match self.peek() {
            Some(Tok::Op(op)) if ["==", "!=", "<", ">", "<=", ">="].contains(op) => *op,
            _ => return Ok(l),
        };
        self.pos += 1;
        let r = self.term()?;
        let res = match op {
            "==" => l.0 == r.0,
            "!=" => l.0 != r.0,
            _ => {
                let (a, b) = l.int().zip(r.int()).ok_or_else(|| {
                    format!(
                        "{op} needs integers, got {:?} and {:?} in {:?}",
                        l.0, r.0, self.expr
                    )
                })?;
                match op {
                    "<" => a < b,
                    ">" => a > b,
                    "<=" => a <= b,
                    _ => a >= b,
                }
            }
        };
        Ok(Val::bool(res))
    }
    fn term(&mut self) -> Result<Val, String> {
        let tok = self
            .toks
            .get(self.pos)
            .cloned()
            .ok_or_else(|| format!("#if expression {:?} ends early", self.expr))?;
        self.pos += 1;
        match tok {
            Tok::Op("(") => {
                let v = self.or()?;
                if !self.eat(")") {
                    return Err(format!("missing ) in {:?}", self.expr));
                }
                Ok(v)
            }
            Tok::Num(n) => Ok(Val(n)),
            Tok::Ident(name) if name == "defined" => {
                if !self.eat("(") {
                    return Err(format!("expected defined(NAME) in {:?}", self.expr));
                }
                let Some(Tok::Ident(n)) = self.toks.get(self.pos).cloned() else {
                    return Err(format!("expected a name in defined() in {:?}", self.expr));
                };
                self.pos += 1;
                if !self.eat(")") {
                    return Err(format!("missing ) in {:?}", self.expr));
                }
                Ok(Val::bool(self.defines.contains_key(&n)))
            }
            Tok::Ident(name) => match self.defines.get(&name) {
                Some(v) => Ok(Val(v.clone())),
                // A bare word on the right of a comparison is a literal (`ACT == f16`).
                None if self.pos >= 2
                    && matches!(self.toks.get(self.pos - 2), Some(Tok::Op(op)) if ["==", "!="].contains(op)) =>
                {
                    Ok(Val(name))
                }
                None if self.skipping > 0 => Ok(Val(String::new())),
                None => Err(format!("undefined name {name} in #if {:?}", self.expr)),
            },
            Tok::Op(op) => Err(format!("unexpected {op} in {:?}", self.expr)),
        }
    }
}

fn eval(expr: &str, defines: &BTreeMap<String, String>) -> Result<bool, String> {
    let toks = tokenize(expr)?;
    if toks.is_empty() {
        return Err("empty #if expression".into());
    }
    let mut p = Parser {
        toks,
        pos: 0,
        defines,
        expr,
        skipping: 0,
    };
    let v = p.or()?;
    if p.pos != p.toks.len() {
        return Err(format!("trailing tokens in #if {expr:?}"));
    }
    Ok(v.truthy())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, &str)], defines: &[(&str, &str)]) -> Result<Composed, ShaderError> {
        preprocess(files, "main.wgsl", defines)
    }

    #[test]
    fn conditionals_and_substitution() {
        let files = [(
            "main.wgsl",
            "#if ACT == f16\nenable f16;\n#endif\nalias act = ACT;\n#if SPLIT > 1 && !defined(NOPE)\nconst S = SPLIT; // SPLIT stays in comments\n#else\nconst S = 1;\n#endif\nconst WG_SIZE = 3u;",
        )];
        let c = run(&files, &[("ACT", "f16"), ("SPLIT", "8"), ("WG", "64")]).unwrap();
        assert_eq!(
            c.code,
            "enable f16;\nalias act = f16;\nconst S = 8; // SPLIT stays in comments\nconst WG_SIZE = 3u;\n"
        );
        assert_eq!(c.origin(3), Some(("main.wgsl", 6)));
        let c = run(&files, &[("ACT", "f32"), ("SPLIT", "1")]).unwrap();
        assert_eq!(
            c.code,
            "alias act = f32;\nconst S = 1;\nconst WG_SIZE = 3u;\n"
        );
    }

    #[test]
    fn short_circuit_allows_undefined_names_where_they_cannot_matter() {
        let files = [(
            "main.wgsl",
            "#if defined(KV) && KV == f16\nkv16\n#endif\n#if !defined(KV) || KV == f32\nkv32\n#endif",
        )];
        assert_eq!(run(&files, &[]).unwrap().code, "kv32\n");
        assert_eq!(run(&files, &[("KV", "f16")]).unwrap().code, "kv16\n");
        assert_eq!(run(&files, &[("KV", "f32")]).unwrap().code, "kv32\n");
        assert!(
            run(
                &[("main.wgsl", "#if KV == f16 && defined(KV)\n#endif")],
                &[]
            )
            .is_err()
        );
    }

    #[test]
    fn elif_chain_and_nesting() {
        let files = [(
            "main.wgsl",
            "#if X == 1\na\n#elif X == 2\n#if Y\nb\n#else\nc\n#endif\n#else\nd\n#endif",
        )];
        assert_eq!(run(&files, &[("X", "1"), ("Y", "1")]).unwrap().code, "a\n");
        assert_eq!(run(&files, &[("X", "2"), ("Y", "1")]).unwrap().code, "b\n");
        assert_eq!(run(&files, &[("X", "2"), ("Y", "0")]).unwrap().code, "c\n");
        assert_eq!(run(&files, &[("X", "3"), ("Y", "0")]).unwrap().code, "d\n");
    }

    #[test]
    fn includes_once_with_path_substitution_and_line_map() {
        let files = [
            (
                "main.wgsl",
                "#include \"q/{T}.wgsl\"\n#include \"q/{T}.wgsl\"\nmain",
            ),
            ("q/q8.wgsl", "#define BLOCK 34\nconst B = BLOCK;"),
        ];
        let c = run(&files, &[("T", "q8")]).unwrap();
        assert_eq!(c.code, "const B = 34;\nmain\n");
        assert_eq!(c.origin(1), Some(("q/q8.wgsl", 2)));
        assert_eq!(c.origin(2), Some(("main.wgsl", 3)));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = run(&[("main.wgsl", "x\n#if TYPO\n#endif")], &[]).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("main.wgsl", 2));
        assert!(e.message.contains("TYPO"), "{e}");
        let e = run(&[("main.wgsl", "#if 1\n")], &[]).unwrap_err();
        assert!(e.message.contains("without #endif"), "{e}");
        let e = run(&[("main.wgsl", "#include \"nope.wgsl\"")], &[]).unwrap_err();
        assert!(e.message.contains("nope.wgsl") && e.line == 1, "{e}");
        let e = run(&[("main.wgsl", "#endif")], &[]).unwrap_err();
        assert!(e.message.contains("#endif without #if"), "{e}");
        let e = run(&[("main.wgsl", "#if A < 3\n#endif")], &[("A", "f16")]).unwrap_err();
        assert!(e.message.contains("integers"), "{e}");
    }
}
