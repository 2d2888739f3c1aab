//! ECMA-262 regular expressions, the dialect of JSON Schema's `pattern`, `patternProperties`
//! and `propertyNames`, enforced with fancy-regex.
//!
//! Owns: parsing a pattern as ECMA-262 reads it and writing it back in a fancy-regex form with
//! the same meaning, or refusing it with the reason; matching (an unanchored search, as JSON
//! Schema says) under a backtracking limit.
//!
//! The pattern is never handed to the crate as written: the two dialects share a syntax but not
//! its meaning (`\d` and `\w` are ASCII in ECMA-262 and Unicode in the crate, `.` excludes
//! four line terminators in ECMA-262 and one in the crate, `[` inside a class nests in the crate,
//! `\h` or `(?i)` mean something to the crate and nothing to ECMA-262). So the pattern is parsed
//! into a small tree and re-emitted from constructs whose meaning is the same in both: every
//! literal outside `[0-9A-Za-z]` as `\x{..}`, every class spelled out, `\b` as lookarounds over
//! `[0-9A-Za-z_]`. Patterns match code points (ECMA-262 with the `u` flag): JSON strings are
//! Unicode text and the crate has no UTF-16 mode.
//!
//! Refused, with the reason: what ECMA-262 itself refuses, escapes ECMA-262 gives no meaning to
//! (`\a`, `\z`, `\Z`, `\A`, octal `\01`), inline flags and other non-ECMA groups, `{,n}` (text in
//! ECMA-262, a quantifier elsewhere), and backreferences whose meaning depends on where the two
//! engines differ (a reference before or inside its group, into a lookbehind or a negative
//! lookaround, or to a group inside a repeated part, whose capture ECMA-262 clears on every
//! repetition). Accepted beyond strict `u` mode because the meaning is unambiguous: identity
//! escapes of any character that is not ASCII alphanumeric (`\-`, `\:`), and a `{`, `}` or `]`
//! that does not start anything, as a literal.
//!
//! Must not import anything beyond std and fancy-regex: no I/O, no clock, no randomness.

use std::fmt::Write as _;

use fancy_regex::{Regex, RegexBuilder};

/// Backtracking steps one match may take before the validator gives up on the value. Patterns
/// without lookaround or backreferences never backtrack (the crate hands them to a linear-time
/// engine); this bounds the rest to a few tens of milliseconds per match.
pub(super) const BACKTRACK_LIMIT: usize = 1_000_000;
/// Compiled-size limit of the linear-time parts (the `regex` crate's own default), so
/// `(?:a{1000}){1000}` is refused rather than built; `^\p{L}{1,100}$` fits.
const SIZE_LIMIT: usize = 10 << 20;
/// Groups nested deeper than this are refused rather than risking the stack.
const MAX_NESTING: usize = 64;

/// ECMA-262's `\w`, and the word characters of `\b`.
const WORD: &str = "0-9A-Za-z_";
/// ECMA-262's `\s`: WhiteSpace and LineTerminator.
const SPACE: &str = r"\x{9}-\x{D}\x{20}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}";
/// What `.` matches: anything but a LineTerminator.
const DOT: &str = r"[^\x{A}\x{D}\x{2028}\x{2029}]";

/// A compiled `pattern`: the source as written, for messages, and the translated regex.
#[derive(Clone, Debug)]
pub(super) struct Pattern {
    source: Box<str>,
    regex: Regex,
}

/// The match gave up at the backtracking limit: the value is refused, never waited on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct GaveUp;

impl Pattern {
    /// Parses `source` as ECMA-262 and compiles it; the error says what cannot be honoured.
    pub(super) fn compile(source: &str) -> Result<Pattern, String> {
        let translated = translate(source)?;
        let regex = RegexBuilder::new(&translated)
            .backtrack_limit(BACKTRACK_LIMIT)
            .delegate_size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| format!("the regex engine cannot compile it: {e}"))?;
        Ok(Pattern {
            source: source.into(),
            regex,
        })
    }

    pub(super) fn source(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches anywhere in `text`.
    pub(super) fn is_match(&self, text: &str) -> Result<bool, GaveUp> {
        self.regex.is_match(text).map_err(|_| GaveUp)
    }
}

/// The fancy-regex source with the meaning ECMA-262 gives `source`.
pub(super) fn translate(source: &str) -> Result<String, String> {
    let chars: Vec<char> = source.chars().collect();
    let names = group_names(&chars);
    let mut parser = Parser {
        chars: &chars,
        at: 0,
        groups: 0,
        names: &names,
        depth: 0,
    };
    let tree = parser.disjunction()?;
    if parser.at < chars.len() {
        // Only an unmatched `)` stops the top-level disjunction early.
        return Err(format!("unmatched `)` at character {}", parser.at));
    }
    check_backreferences(&tree, names.len())?;
    let mut out = String::with_capacity(source.len() * 2);
    emit(&tree, &mut out);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The tree

#[derive(Debug)]
enum Ast {
    Empty,
    Literal(char),
    Dot,
    Class(Class),
    Start,
    End,
    /// `\b` (false) or `\B` (true).
    WordBoundary(bool),
    Group(GroupKind, Box<Ast>),
    Concat(Vec<Ast>),
    Alternation(Vec<Ast>),
    Repeat {
        body: Box<Ast>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
    /// A backreference to capture group n (1-based), as written (`\1`, `\k<name>`).
    Backref(usize, String),
}

#[derive(Debug)]
enum GroupKind {
    /// Capture group n (1-based).
    Capture(usize),
    NonCapture,
    Look {
        behind: bool,
        negative: bool,
    },
}

#[derive(Debug)]
struct Class {
    negated: bool,
    items: Vec<ClassItem>,
}

#[derive(Debug)]
enum ClassItem {
    Char(char),
    Range(char, char),
    /// `\d`, `\w`, `\s` (and negated): the ECMA-262 set, spelled out.
    Set {
        ranges: &'static str,
        negated: bool,
    },
    /// `\p{...}` / `\P{...}`.
    Property {
        name: String,
        negated: bool,
    },
}

// ---------------------------------------------------------------------------------------------
// Parsing (ECMA-262 Pattern grammar, `u` mode, with the leniencies in the header)

/// Names of the named groups in order, `None` for unnamed ones: ECMA-262 lets `\2` or `\k<n>`
/// refer to a group written later, so the groups are counted before parsing.
fn group_names(chars: &[char]) -> Vec<Option<String>> {
    let mut names = Vec::new();
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' => in_class = true,
            ']' => in_class = false,
            '(' if !in_class => {
                if chars.get(i + 1) != Some(&'?') {
                    names.push(None);
                } else if chars.get(i + 2) == Some(&'<')
                    && !matches!(chars.get(i + 3), Some('=') | Some('!'))
                {
                    let name: String = chars[i + 3..].iter().take_while(|&&c| c != '>').collect();
                    names.push(Some(name));
                }
            }
            _ => {}
        }
        i += 1;
    }
    names
}

/// A brace quantifier's digits and how many characters it spans.
struct Braces<'a> {
    min: &'a [char],
    max: Option<&'a [char]>,
    used: usize,
}

struct Parser<'a> {
    chars: &'a [char],
    at: usize,
    /// Capture groups opened so far.
    groups: usize,
    names: &'a [Option<String>],
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.at + ahead).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c))
    }

    fn disjunction(&mut self) -> Result<Ast, String> {
        let mut branches = vec![self.alternative()?];
        while self.eat('|') {
            branches.push(self.alternative()?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Ast::Empty)
        } else {
            Ast::Alternation(branches)
        })
    }

    fn alternative(&mut self) -> Result<Ast, String> {
        let mut terms = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            terms.push(self.term()?);
        }
        Ok(match terms.len() {
            0 => Ast::Empty,
            1 => terms.pop().unwrap_or(Ast::Empty),
            _ => Ast::Concat(terms),
        })
    }

    fn term(&mut self) -> Result<Ast, String> {
        let start = self.at;
        let assertion = match self.peek() {
            Some('^') => Some(Ast::Start),
            Some('$') => Some(Ast::End),
            Some('\\') if self.peek_at(1) == Some('b') => Some(Ast::WordBoundary(false)),
            Some('\\') if self.peek_at(1) == Some('B') => Some(Ast::WordBoundary(true)),
            _ => None,
        };
        if let Some(assertion) = assertion {
            self.at += if matches!(assertion, Ast::WordBoundary(_)) {
                2
            } else {
                1
            };
            return self.refuse_quantifier(assertion, start);
        }
        for (opener, behind, negative) in [
            ("(?=", false, false),
            ("(?!", false, true),
            ("(?<=", true, false),
            ("(?<!", true, true),
        ] {
            if self.starts_with(opener) {
                self.at += opener.chars().count();
                let body = self.group_body()?;
                let look = Ast::Group(GroupKind::Look { behind, negative }, Box::new(body));
                return self.refuse_quantifier(look, start);
            }
        }
        let atom = self.atom()?;
        self.quantified(atom, start)
    }

    /// Assertions cannot be repeated (ECMA-262 `u` mode).
    fn refuse_quantifier(&mut self, assertion: Ast, start: usize) -> Result<Ast, String> {
        if self.quantifier_ahead() {
            return Err(format!(
                "the quantifier at character {} repeats an assertion (`{}`); there is nothing \
                 to repeat",
                self.at,
                self.text(start, self.at)
            ));
        }
        Ok(assertion)
    }

    fn text(&self, from: usize, to: usize) -> String {
        self.chars[from..to.min(self.chars.len())].iter().collect()
    }

    fn quantifier_ahead(&self) -> bool {
        match self.peek() {
            Some('*' | '+' | '?') => true,
            Some('{') => self.braces().is_some(),
            _ => false,
        }
    }

    /// `{n}`, `{n,}` or `{n,m}` at the cursor.
    fn braces(&self) -> Option<Braces<'_>> {
        let rest = &self.chars[self.at + 1..];
        let digits = |s: &[char]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let n = digits(rest);
        if n == 0 {
            return None;
        }
        match rest.get(n) {
            Some('}') => Some(Braces {
                min: &rest[..n],
                max: Some(&rest[..n]),
                used: n + 2,
            }),
            Some(',') => {
                let m = digits(&rest[n + 1..]);
                (rest.get(n + 1 + m) == Some(&'}')).then(|| {
                    let max = (m > 0).then(|| &rest[n + 1..n + 1 + m]);
                    Braces {
                        min: &rest[..n],
                        max,
                        used: n + m + 3,
                    }
                })
            }
            _ => None,
        }
    }

    fn quantified(&mut self, atom: Ast, start: usize) -> Result<Ast, String> {
        let at = self.at;
        let (min, max) =
            match self.peek() {
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some('?') => (0, Some(1)),
                Some('{') => match self.braces() {
                    Some(Braces { min, max, used }) => {
                        let number =
                            |digits: &[char]| {
                                digits.iter().collect::<String>().parse::<u32>().map_err(|_| {
                            format!("the quantifier at character {at} has a number too large")
                        })
                            };
                        let min = number(min)?;
                        let max = max.map(number).transpose()?;
                        if max.is_some_and(|max| max < min) {
                            return Err(format!(
                            "the quantifier `{}` at character {at} has its numbers out of order",
                            self.text(at, at + used)
                        ));
                        }
                        self.at += used - 1;
                        (min, max)
                    }
                    None => return Ok(atom),
                },
                _ => return Ok(atom),
            };
        self.at += 1;
        let greedy = !self.eat('?');
        if self.quantifier_ahead() {
            return Err(format!(
                "the quantifier at character {} follows another one (`{}`); ECMA-262 has no \
                 possessive or stacked quantifiers",
                self.at,
                self.text(start, self.at)
            ));
        }
        Ok(Ast::Repeat {
            body: Box::new(atom),
            min,
            max,
            greedy,
        })
    }

    fn atom(&mut self) -> Result<Ast, String> {
        let at = self.at;
        let c = match self.peek() {
            Some(c) => c,
            None => return Ok(Ast::Empty),
        };
        self.at += 1;
        match c {
            '.' => Ok(Ast::Dot),
            '(' => self.group(at),
            '[' => self.class(at).map(Ast::Class),
            '\\' => self.atom_escape(at),
            '*' | '+' | '?' => Err(format!(
                "the quantifier `{c}` at character {at} has nothing to repeat"
            )),
            '{' => {
                self.at = at;
                if self.braces().is_some() {
                    return Err(format!(
                        "the quantifier at character {at} has nothing to repeat"
                    ));
                }
                self.at = at + 1;
                let rest = &self.chars[at + 1..];
                let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
                if rest.first() == Some(&',')
                    || (rest.get(n) == Some(&',') && rest.get(n + 1) == Some(&','))
                {
                    return Err(format!(
                        "`{{` at character {at} starts `{{,n}}`, which ECMA-262 reads as text \
                         and other dialects as a quantifier; write `{{0,n}}` or `\\{{`"
                    ));
                }
                Ok(Ast::Literal('{'))
            }
            other => Ok(Ast::Literal(other)),
        }
    }

    fn group(&mut self, at: usize) -> Result<Ast, String> {
        if self.eat('?') {
            if self.eat(':') {
                let body = self.group_body()?;
                return Ok(Ast::Group(GroupKind::NonCapture, Box::new(body)));
            }
            if self.eat('<') {
                let name: String = self.chars[self.at..]
                    .iter()
                    .take_while(|&&c| c != '>')
                    .collect();
                let valid = name.chars().enumerate().all(|(i, c)| {
                    c == '_' || c == '$' || c.is_alphabetic() || (i > 0 && c.is_numeric())
                });
                if name.is_empty() || !valid || self.peek_at(name.chars().count()) != Some('>') {
                    return Err(format!(
                        "the group name at character {at} is not an identifier followed by `>`"
                    ));
                }
                let index = self.groups + 1;
                if self.names[..self.groups]
                    .iter()
                    .any(|n| n.as_deref() == Some(&name))
                {
                    return Err(format!("the group name `{name}` is used twice"));
                }
                self.at += name.chars().count() + 1;
                self.groups = index;
                let body = self.group_body()?;
                return Ok(Ast::Group(GroupKind::Capture(index), Box::new(body)));
            }
            let shown = self.text(at, self.at + 1);
            let hint = match self.peek() {
                Some('P') => "; for a named group write `(?<name>...)`",
                Some('#') => "; comments are not ECMA-262",
                _ => "; inline flags such as `(?i)` are not ECMA-262, spell the cases out, e.g. `[Aa]`",
            };
            return Err(format!(
                "the group `{shown}` at character {at} is not ECMA-262{hint}"
            ));
        }
        self.groups += 1;
        let index = self.groups;
        let body = self.group_body()?;
        Ok(Ast::Group(GroupKind::Capture(index), Box::new(body)))
    }

    /// The inside of a group, after its opener, through the closing `)`.
    fn group_body(&mut self) -> Result<Ast, String> {
        let open = self.at;
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!(
                "groups are nested deeper than {MAX_NESTING} levels"
            ));
        }
        let body = self.disjunction()?;
        self.depth -= 1;
        if !self.eat(')') {
            return Err(format!(
                "the group opened before character {open} is not closed with `)`"
            ));
        }
        Ok(body)
    }

    fn class(&mut self, at: usize) -> Result<Class, String> {
        let negated = self.eat('^');
        let mut items = Vec::new();
        loop {
            let c = match self.peek() {
                Some(']') => {
                    self.at += 1;
                    return Ok(Class { negated, items });
                }
                Some(c) => c,
                None => {
                    return Err(format!(
                        "the class `[` at character {at} is not closed with `]`"
                    ))
                }
            };
            let from = self.class_atom(c)?;
            let ranged = self.peek() == Some('-') && !matches!(self.peek_at(1), Some(']') | None);
            if !ranged {
                items.push(from);
                continue;
            }
            let dash = self.at;
            self.at += 1;
            let next = self.peek().unwrap_or(']');
            let to = self.class_atom(next)?;
            match (from, to) {
                (ClassItem::Char(a), ClassItem::Char(b)) if a <= b => {
                    items.push(ClassItem::Range(a, b))
                }
                (ClassItem::Char(a), ClassItem::Char(b)) => {
                    return Err(format!(
                        "the range `{a}-{b}` at character {dash} is out of order"
                    ))
                }
                _ => {
                    return Err(format!(
                        "the range at character {dash} has a class such as `\\d` at one end; \
                         escape the `-` as `\\-` if a literal dash is meant"
                    ))
                }
            }
        }
    }

    fn class_atom(&mut self, c: char) -> Result<ClassItem, String> {
        let at = self.at;
        self.at += 1;
        if c != '\\' {
            return Ok(ClassItem::Char(c));
        }
        let e = self
            .peek()
            .ok_or_else(|| "the pattern ends with a lone `\\`".to_string())?;
        self.at += 1;
        match e {
            'b' => Ok(ClassItem::Char('\u{8}')),
            '-' => Ok(ClassItem::Char('-')),
            'B' => Err(format!(
                "`\\B` at character {at} is not allowed inside a class"
            )),
            '1'..='9' => Err(format!(
                "`\\{e}` at character {at} inside a class is an octal escape in old ECMA-262 and \
                 an error in ECMA-262's unicode mode; write `\\x{{..}}` or `\\u....`"
            )),
            _ => self.escape_common(e, at),
        }
    }

    fn atom_escape(&mut self, at: usize) -> Result<Ast, String> {
        let e = self
            .peek()
            .ok_or_else(|| "the pattern ends with a lone `\\`".to_string())?;
        if e.is_ascii_digit() && e != '0' {
            let digits: String = self.chars[self.at..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            self.at += digits.len();
            let written = format!("\\{digits}");
            return match digits.parse::<usize>() {
                Ok(n) if n <= self.names.len() => Ok(Ast::Backref(n, written)),
                _ => Err(format!(
                    "`{written}` at character {at} refers to capture group {digits}, but the \
                     pattern has {} capture group(s); for a character write `\\x{{..}}`",
                    self.names.len()
                )),
            };
        }
        if e == 'k' {
            self.at += 1;
            let name: String = if self.eat('<') {
                self.chars[self.at..]
                    .iter()
                    .take_while(|&&c| c != '>')
                    .collect()
            } else {
                String::new()
            };
            let index = self
                .names
                .iter()
                .position(|n| n.as_deref() == Some(name.as_str()));
            let len = name.chars().count();
            return match index {
                Some(i) if self.peek_at(len) == Some('>') => {
                    self.at += len + 1;
                    Ok(Ast::Backref(i + 1, format!("\\k<{name}>")))
                }
                _ => Err(format!(
                    "`\\k` at character {at} is not a reference `\\k<name>` to a named group"
                )),
            };
        }
        self.at += 1;
        match self.escape_common(e, at)? {
            ClassItem::Char(c) => Ok(Ast::Literal(c)),
            set => Ok(Ast::Class(Class {
                negated: false,
                items: vec![set],
            })),
        }
    }

    /// Escapes with one meaning inside and outside a class; `e` is the character after `\`,
    /// already consumed.
    fn escape_common(&mut self, e: char, at: usize) -> Result<ClassItem, String> {
        let set = |ranges: &'static str, negated: bool| Ok(ClassItem::Set { ranges, negated });
        match e {
            'd' => set("0-9", false),
            'D' => set("0-9", true),
            'w' => set(WORD, false),
            'W' => set(WORD, true),
            's' => set(SPACE, false),
            'S' => set(SPACE, true),
            'f' => Ok(ClassItem::Char('\u{C}')),
            'n' => Ok(ClassItem::Char('\n')),
            'r' => Ok(ClassItem::Char('\r')),
            't' => Ok(ClassItem::Char('\t')),
            'v' => Ok(ClassItem::Char('\u{B}')),
            '0' if !self.peek().is_some_and(|c| c.is_ascii_digit()) => Ok(ClassItem::Char('\0')),
            '0' => Err(format!(
                "`\\0` followed by a digit at character {at} is an octal escape, which ECMA-262's \
                 unicode mode refuses; write `\\x{{..}}`"
            )),
            'c' => match self.peek() {
                Some(l) if l.is_ascii_alphabetic() => {
                    self.at += 1;
                    Ok(ClassItem::Char(char::from(l as u8 % 32)))
                }
                _ => Err(format!(
                    "`\\c` at character {at} must be followed by a letter (a control character)"
                )),
            },
            'x' => {
                let hex = self.hex_digits(2).ok_or_else(|| {
                    format!("`\\x` at character {at} must be followed by two hex digits")
                })?;
                Ok(ClassItem::Char(char::from_u32(hex).unwrap_or('\0')))
            }
            'u' => self.unicode_escape(at).map(ClassItem::Char),
            'p' | 'P' => {
                let name: String = if self.eat('{') {
                    self.chars[self.at..]
                        .iter()
                        .take_while(|&&c| c != '}')
                        .collect()
                } else {
                    String::new()
                };
                let len = name.chars().count();
                let valid = !name.is_empty()
                    && name.split('=').count() <= 2
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '=');
                if !valid || self.peek_at(len) != Some('}') {
                    return Err(format!(
                        "`\\{e}` at character {at} must be a Unicode property such as \
                         `\\p{{Letter}}` or `\\p{{Script=Greek}}`"
                    ));
                }
                self.at += len + 1;
                Ok(ClassItem::Property {
                    name,
                    negated: e == 'P',
                })
            }
            e if e.is_ascii_alphanumeric() => {
                let hint = match e {
                    'A' => "; for the start of the text write `^`",
                    'z' | 'Z' => "; for the end of the text write `$`",
                    'a' => "; for the bell character write `\\x07`",
                    'e' => "; for the escape character write `\\x1B`",
                    'h' => "; for a hex digit write `[0-9A-Fa-f]`",
                    _ => "",
                };
                Err(format!(
                    "`\\{e}` at character {at} has no meaning in ECMA-262 regular expressions \
                     (the dialect of JSON Schema patterns){hint}"
                ))
            }
            literal => Ok(ClassItem::Char(literal)),
        }
    }

    fn hex_digits(&mut self, n: usize) -> Option<u32> {
        let digits: String = self.chars.get(self.at..self.at + n)?.iter().collect();
        let value = u32::from_str_radix(&digits, 16).ok()?;
        digits.chars().all(|c| c.is_ascii_hexdigit()).then(|| {
            self.at += n;
            value
        })
    }

    /// `\uXXXX` (a surrogate pair written as two of them is one code point) or `\u{X...}`.
    fn unicode_escape(&mut self, at: usize) -> Result<char, String> {
        let bad = || format!("`\\u` at character {at} must be `\\uXXXX` or `\\u{{X...}}`");
        if self.eat('{') {
            let digits: String = self.chars[self.at..]
                .iter()
                .take_while(|&&c| c != '}')
                .collect();
            let len = digits.chars().count();
            if len == 0 || len > 6 || self.peek_at(len) != Some('}') {
                return Err(bad());
            }
            let value = u32::from_str_radix(&digits, 16).map_err(|_| bad())?;
            self.at += len + 1;
            return char::from_u32(value).ok_or_else(|| {
                format!("`\\u{{{digits}}}` at character {at} is not a Unicode scalar value")
            });
        }
        let high = self.hex_digits(4).ok_or_else(bad)?;
        if let Some(c) = char::from_u32(high) {
            return Ok(c);
        }
        if (0xD800..0xDC00).contains(&high) && self.starts_with("\\u") {
            let save = self.at;
            self.at += 2;
            match self.hex_digits(4) {
                Some(low @ 0xDC00..=0xDFFF) => {
                    let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    return char::from_u32(c).ok_or_else(bad);
                }
                _ => self.at = save,
            }
        }
        Err(format!(
            "`\\u{high:04X}` at character {at} is a lone surrogate, which never occurs in a JSON \
             string decoded as Unicode text"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Backreferences

/// Where each capture group sits, gathered in one walk in pattern order.
#[derive(Clone, Copy, Default)]
struct GroupSite {
    closed: bool,
    /// Inside a lookbehind or a negative lookaround, or inside a repeated part.
    in_lookbehind: bool,
    in_negative: bool,
    repeated: bool,
}

#[derive(Clone, Copy, Default)]
struct Context {
    in_lookbehind: bool,
    in_negative: bool,
    repeated: bool,
}

/// Refuses the backreferences whose meaning differs between ECMA-262 and the crate.
///
/// A reference to a group that has not matched matches the empty string in ECMA-262; that is
/// kept by emitting it as a conditional. What cannot be kept: a capture that ECMA-262 clears on
/// each repetition of an enclosing quantifier (the crate keeps the last one), captures inside a
/// lookbehind (ECMA-262 matches those right to left), and references that come before their
/// group closes (ECMA-262 sees an empty capture, the crate a previous one).
fn check_backreferences(tree: &Ast, groups: usize) -> Result<(), String> {
    let mut sites = vec![GroupSite::default(); groups + 1];
    walk(tree, Context::default(), &mut sites)
}

fn walk(ast: &Ast, ctx: Context, sites: &mut [GroupSite]) -> Result<(), String> {
    match ast {
        Ast::Group(GroupKind::Capture(n), body) => {
            sites[*n] = GroupSite {
                closed: false,
                in_lookbehind: ctx.in_lookbehind,
                in_negative: ctx.in_negative,
                repeated: ctx.repeated,
            };
            walk(body, ctx, sites)?;
            sites[*n].closed = true;
        }
        Ast::Group(GroupKind::NonCapture, body) => walk(body, ctx, sites)?,
        Ast::Group(GroupKind::Look { behind, negative }, body) => {
            let inner = Context {
                in_lookbehind: ctx.in_lookbehind || *behind,
                in_negative: ctx.in_negative || *negative,
                ..ctx
            };
            walk(body, inner, sites)?;
        }
        Ast::Repeat { body, max, .. } => {
            let repeats = max.is_none_or(|m| m > 1);
            match &**body {
                // A group that is itself the repeated atom keeps its last capture in both.
                Ast::Group(GroupKind::Capture(n), inner) => {
                    sites[*n] = GroupSite {
                        closed: false,
                        in_lookbehind: ctx.in_lookbehind,
                        in_negative: ctx.in_negative,
                        repeated: ctx.repeated,
                    };
                    let inside = Context {
                        repeated: ctx.repeated || repeats,
                        ..ctx
                    };
                    walk(inner, inside, sites)?;
                    sites[*n].closed = true;
                }
                other => {
                    let inside = Context {
                        repeated: ctx.repeated || repeats,
                        ..ctx
                    };
                    walk(other, inside, sites)?;
                }
            }
        }
        Ast::Concat(items) | Ast::Alternation(items) => {
            for item in items {
                walk(item, ctx, sites)?;
            }
        }
        Ast::Backref(n, written) => {
            let site = sites[*n];
            let reason = if ctx.in_lookbehind {
                Some("it is inside a lookbehind, which ECMA-262 matches right to left")
            } else if !site.closed {
                Some("it comes before its group closes, where ECMA-262 sees an empty capture")
            } else if site.in_lookbehind {
                Some("its group is inside a lookbehind, which ECMA-262 matches right to left")
            } else if site.in_negative {
                Some("its group is inside a negative lookaround, so it never holds a capture")
            } else if site.repeated {
                Some(
                    "its group is inside a repeated part, whose captures ECMA-262 clears on \
                     every repetition",
                )
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(format!(
                    "the backreference `{written}` cannot be matched as ECMA-262 does: {reason}"
                ));
            }
        }
        Ast::Empty
        | Ast::Literal(_)
        | Ast::Dot
        | Ast::Class(_)
        | Ast::Start
        | Ast::End
        | Ast::WordBoundary(_) => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Emitting

fn emit(ast: &Ast, out: &mut String) {
    match ast {
        Ast::Empty => {}
        Ast::Literal(c) => literal(*c, out),
        Ast::Dot => out.push_str(DOT),
        Ast::Class(class) => emit_class(class, out),
        Ast::Start => out.push('^'),
        Ast::End => out.push('$'),
        Ast::WordBoundary(negated) => {
            let w = format!("[{WORD}]");
            // The crate's `\b` is Unicode-aware; ECMA-262's counts only ASCII word characters.
            let _ = if *negated {
                write!(out, "(?:(?<={w})(?={w})|(?<!{w})(?!{w}))")
            } else {
                write!(out, "(?:(?<={w})(?!{w})|(?<!{w})(?={w}))")
            };
        }
        Ast::Group(kind, body) => {
            out.push_str(match kind {
                GroupKind::Capture(_) => "(",
                GroupKind::NonCapture => "(?:",
                GroupKind::Look {
                    behind: false,
                    negative: false,
                } => "(?=",
                GroupKind::Look {
                    behind: false,
                    negative: true,
                } => "(?!",
                GroupKind::Look {
                    behind: true,
                    negative: false,
                } => "(?<=",
                GroupKind::Look {
                    behind: true,
                    negative: true,
                } => "(?<!",
            });
            emit(body, out);
            out.push(')');
        }
        Ast::Concat(items) => items.iter().for_each(|item| emit(item, out)),
        Ast::Alternation(branches) => {
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                emit(branch, out);
            }
        }
        Ast::Repeat {
            body,
            min,
            max,
            greedy,
        } => {
            let atomic = matches!(
                **body,
                Ast::Literal(_) | Ast::Dot | Ast::Class(_) | Ast::Group(..)
            );
            if !atomic {
                out.push_str("(?:");
            }
            emit(body, out);
            if !atomic {
                out.push(')');
            }
            let _ = match (min, max) {
                (0, None) => write!(out, "*"),
                (1, None) => write!(out, "+"),
                (0, Some(1)) => write!(out, "?"),
                (n, None) => write!(out, "{{{n},}}"),
                (n, Some(m)) if n == m => write!(out, "{{{n}}}"),
                (n, Some(m)) => write!(out, "{{{n},{m}}}"),
            };
            if !greedy {
                out.push('?');
            }
        }
        // ECMA-262: a reference to a group that has not matched matches the empty string.
        Ast::Backref(n, _) => {
            let _ = write!(out, "(?({n})\\{n}|)");
        }
    }
}

/// One character, written so no dialect can read it as syntax.
fn literal(c: char, out: &mut String) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:X}}}", u32::from(c));
    }
}

fn emit_class(class: &Class, out: &mut String) {
    if class.items.is_empty() {
        // `[]` matches nothing and `[^]` any character; the crate reads `[]...]` differently.
        out.push_str(if class.negated {
            r"[\x{0}-\x{10FFFF}]"
        } else {
            r"[^\x{0}-\x{10FFFF}]"
        });
        return;
    }
    out.push('[');
    if class.negated {
        out.push('^');
    }
    for item in &class.items {
        match item {
            ClassItem::Char(c) => literal(*c, out),
            ClassItem::Range(a, b) => {
                literal(*a, out);
                out.push('-');
                literal(*b, out);
            }
            ClassItem::Set {
                ranges,
                negated: false,
            } => out.push_str(ranges),
            ClassItem::Set {
                ranges,
                negated: true,
            } => {
                let _ = write!(out, "[^{ranges}]");
            }
            ClassItem::Property { name, negated } => {
                let _ = write!(out, "\\{}{{{name}}}", if *negated { 'P' } else { 'p' });
            }
        }
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        Pattern::compile(pattern)
            .unwrap_or_else(|e| panic!("{pattern:?} should compile: {e}"))
            .is_match(text)
            .expect("no backtracking limit in these cases")
    }

    fn refused(pattern: &str) -> String {
        Pattern::compile(pattern).expect_err(&format!("{pattern:?} should be refused"))
    }

    #[test]
    fn ecma_translation_is_spelled_out() {
        let cases = [
            (r"^\d+$", r"^[0-9]+$"),
            (r"a.b", r"a[^\x{A}\x{D}\x{2028}\x{2029}]b"),
            (r"\w", r"[0-9A-Za-z_]"),
            (r"[^\W]", r"[^[^0-9A-Za-z_]]"),
            (r"\/x\-", r"\x{2F}x\x{2D}"),
            (r"[a-z\-_]", r"[a-z\x{2D}\x{5F}]"),
            (r"(a)\1", r"(a)(?(1)\1|)"),
            (r"(?<year>\d{4})-\k<year>", r"([0-9]{4})\x{2D}(?(1)\1|)"),
            (r"ab{2,}?", r"ab{2,}?"),
            (r"(?:ab)*", r"(?:ab)*"),
            (r"x{}", r"x\x{7B}\x{7D}"),
            (r"[]", r"[^\x{0}-\x{10FFFF}]"),
            (r"[^]", r"[\x{0}-\x{10FFFF}]"),
            (r"\u00e9\u{1F600}\uD83D\uDE00", r"\x{E9}\x{1F600}\x{1F600}"),
            (r"\cJ\x41\0", r"\x{A}A\x{0}"),
            (r"\p{Script=Greek}\P{L}", r"[\p{Script=Greek}][\P{L}]"),
        ];
        for (ecma, crate_form) in cases {
            assert_eq!(translate(ecma).as_deref(), Ok(crate_form), "{ecma}");
        }
    }

    #[test]
    fn ecma_escapes_keep_their_ecma_meaning() {
        // \d and \w are ASCII; \s includes ECMA's WhiteSpace (NBSP, BOM) but not NEL.
        assert!(!matches(r"^\d$", "٣"));
        assert!(!matches(r"^\w$", "é"));
        assert!(matches(r"^\W$", "é"));
        assert!(matches(r"^\s$", "\u{FEFF}"));
        assert!(matches(r"^\s$", "\u{A0}"));
        assert!(!matches(r"^\s$", "\u{85}"));
        // `.` excludes the four line terminators only.
        assert!(!matches(r"^.$", "\u{2028}"));
        assert!(!matches(r"^.$", "\r"));
        assert!(matches(r"^.$", "\u{85}"));
        assert!(matches(r"^.$", "🐲"));
        // `$` is the end of the text, not before a trailing newline; `^` its start.
        assert!(!matches(r"abc$", "abc\n"));
        assert!(!matches(r"^abc", "x\nabc"));
        // `\b` counts only ASCII word characters.
        assert!(matches(r"\bx", "éx"));
        assert!(!matches(r"\Bx", "éx"));
        assert!(matches(r"a\b", "a b"));
        assert!(!matches(r"a\b", "ab"));
        // Inside a class `\b` is backspace, `[` is a literal, `&&` and `--` are plain text.
        assert!(matches(r"^[\b]$", "\u{8}"));
        assert!(matches(r"^[[a]+$", "[a["));
        assert!(matches(r"^[a&&b]+$", "&"));
        assert!(matches(r"^[+--]$", ","));
        assert!(matches(r"^[\d-]+$", "1-2"));
        // Unanchored: a search anywhere in the text.
        assert!(matches(r"b", "abc"));
        assert!(matches(r"", "abc"));
        // Identity escapes and literal braces.
        assert!(matches(r"^\/\.\*$", "/.*"));
        assert!(matches(r"^a{x$", "a{x"));
        assert!(matches(r"^\{\}$", "{}"));
        assert!(matches(r"^a]$", "a]"));
        // Empty alternatives and groups.
        assert!(matches(r"^(|a)b$", "b"));
        assert!(matches(r"^(?:a||b)$", ""));
        assert!(!matches(r"^(?:a|b)$", ""));
        assert!(matches(r"^()x{0}$", ""));
        // Classes with nothing in them.
        assert!(!matches(r"[]", "a"));
        assert!(matches(r"^[^]$", "\n"));
        assert!(matches(r"^\p{Lu}+$", "ÀB"));
        assert!(!matches(r"^\P{Lu}$", "À"));
    }

    #[test]
    fn ecma_lookaround_and_backreferences() {
        // Pydantic's Decimal string pattern.
        let decimal = r"^(?!^[-+.]*$)[+-]?0*\d*\.?\d*$";
        assert!(matches(decimal, "-12.50"));
        assert!(matches(decimal, ".5"));
        assert!(!matches(decimal, "+."));
        assert!(!matches(decimal, "1e5"));
        assert!(matches(r"(?<=\$)\d+", "cost $42"));
        assert!(!matches(r"(?<!\$)\b\d+", "$42"));
        assert!(matches(r"^(a+)b\1$", "aabaa"));
        assert!(!matches(r"^(a+)b\1$", "aaba"));
        // A reference to a group that did not take part matches the empty string.
        assert!(matches(r"^(a)?b\1c$", "bc"));
        assert!(matches(r"^(?:(x)|y)\1z$", "yz"));
        assert!(matches(r"^(?=(\w+))\1:$", "ab:"));
        assert!(matches(r"^(a|b)+\1$", "abb"));
    }

    #[test]
    fn ecma_refusals_say_why() {
        let cases = [
            (r"\a", "`\\a` at character 0 has no meaning in ECMA-262"),
            (r"x\Z", "for the end of the text write `$`"),
            (r"\Ax", "for the start of the text write `^`"),
            (r"(?i)abc", "inline flags such as `(?i)` are not ECMA-262"),
            (r"(?P<n>a)", "for a named group write `(?<name>...)`"),
            (r"a{,3}", "write `{0,n}`"),
            (r"a**", "follows another one"),
            (r"a*+", "no possessive or stacked quantifiers"),
            (r"*a", "has nothing to repeat"),
            (r"^*", "repeats an assertion"),
            (r"(?=a)+", "repeats an assertion"),
            (r"a{3,1}", "out of order"),
            (r"[z-a]", "out of order"),
            (r"[\d-z]", "has a class such as `\\d` at one end"),
            (r"(a", "is not closed with `)`"),
            (r"a)", "unmatched `)`"),
            (r"[a", "is not closed with `]`"),
            (r"\2(a)", "refers to capture group 2, but the pattern has 1"),
            (r"\1(a)", "comes before its group closes"),
            (r"(a\1)", "comes before its group closes"),
            (r"(?:(a)|b)*\1", "inside a repeated part"),
            (r"(?!(a))\1", "inside a negative lookaround"),
            (r"(?<=(a))\1", "its group is inside a lookbehind"),
            (r"(a)(?<=\1)", "it is inside a lookbehind"),
            (r"\k<x>", "is not a reference `\\k<name>`"),
            (r"(?<a>x)(?<a>y)", "used twice"),
            (r"\01", "octal escape"),
            (r"[\1]", "octal escape"),
            (r"\uD800", "lone surrogate"),
            (r"\x4", "two hex digits"),
            (r"\c1", "followed by a letter"),
            (r"\p{Bad Name}", "Unicode property"),
            (r"\p{NotAProperty}", "the regex engine cannot compile it"),
            ("\\", "lone `\\`"),
        ];
        for (pattern, expected) in cases {
            let e = refused(pattern);
            assert!(e.contains(expected), "{pattern:?}: {e}");
        }
        let deep = "(".repeat(MAX_NESTING + 1) + &")".repeat(MAX_NESTING + 1);
        assert!(refused(&deep).contains("nested deeper"));
        assert!(refused("(?:a{1000}){1000}").contains("cannot compile"));
        Pattern::compile(r"^\p{L}{1,100}$").expect("a repeated Unicode class fits the limit");
    }

    #[test]
    fn ecma_backtracking_limit_gives_up_instead_of_hanging() {
        let hostile = Pattern::compile(r"^(a|a)*\1b$").expect("compiles");
        assert_eq!(hostile.is_match(&"a".repeat(64)), Err(GaveUp));
        assert_eq!(hostile.source(), r"^(a|a)*\1b$");
        // Without lookaround or backreferences the crate never backtracks.
        let linear = Pattern::compile(r"^(a|a)*b$").expect("compiles");
        assert_eq!(linear.is_match(&"a".repeat(10_000)), Ok(false));
    }
}
