//! The README as a tour that runs (issue 15.5): the shell commands of the
//! README's "A five-minute tour", "Check kinds" and "Alerts" sections are
//! extracted and run in order with `sh -c` against one fresh monitor (a new
//! SQLite file, a free port), and what they print is compared with the
//! output blocks the README shows after them. So the tour cannot drift: a
//! renamed field, a new status or error text, a changed status line or
//! header, in the README or in the code, fails this test with the step, the
//! README's text, what came back and the first difference.
//!
//! What the README's addresses stand for is provided here, on 127.0.0.1, and
//! the addresses are rewritten to them in commands and outputs alike: the
//! monitor (`127.0.0.1:8088`), the webhook receiver (`127.0.0.1:9999`), a
//! port nothing listens on (`127.0.0.1:9/`), a TCP listener
//! (`127.0.0.1:5432`), a TLS server whose certificate from a test CA
//! expires in 10 days (`localhost:8443`), and dnsmasq (`127.0.0.1:5353`).
//!
//! How outputs are compared:
//! - An output is read as a sequence of items: HTTP heads (`curl -i`), JSON
//!   values, and other lines. Items are compared in order, one to one.
//! - `...` in the README's JSON stands for any further members of an object
//!   or elements of an array, anywhere else for any text. An object without
//!   `...` must have exactly the fields shown.
//! - A head's status line must be equal; every header shown must be there
//!   with its value (headers not shown may be present: curl prints `date`).
//! - What legitimately varies is matched loosely: RFC 3339 times anywhere,
//!   latencies (`latency_ms`, `latency`, `last_latency_ms`), the `id` of a
//!   log (an object with `service_id`: how many checks ran first depends on
//!   timing), the `before=` of a `link`, the `X-Healthmon-Timestamp`, and a
//!   push token (the README's is replaced by the one the monitor gave).
//!
//! Invisible markers in README.md (HTML comments, `<!-- tour: WORD ... -->`)
//! say what the README's prose says in words:
//! - `skip: why` before a `sh` block: not run (and why).
//! - `until` before a `sh` block of reads: run again until its output
//!   matches ("the first check runs right away"), up to a deadline.
//! - `run: COMMAND` before an output block that follows prose: the command
//!   the prose names ("from `GET /services/{id}/logs?limit=1`"), run until
//!   its output matches.
//! - `inline` before a paragraph: its first code span starting with `curl `
//!   is run until its output matches the next code span.
//! - `websocket` before an output block: what a client of `/ws`, connected
//!   before the `sh` block above ran, receives; the README's lines must
//!   arrive in order, other messages may come between (it is a stream).
//! - `receiver` before an output block: the request line, headers and JSON
//!   body the webhook receiver gets, waited for.
//!
//! A `sh` block with no output block after it must exit 0, and a command
//! ending in a comment such as `# {"ok":true}` must print that.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "test code: a panic is a failed test, and output is for the person running it"
)]

mod common;

use common::ca::{TestCa, days_from_now};
use common::dns::Dnsmasq;
use common::receiver::{Receiver, free_port};
use common::tls_target::TlsTarget;
use common::{Monitor, WsClient};
use serde_json::Value;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The README's sections that are a tour, run in this order.
const SECTIONS: [&str; 3] = ["A five-minute tour", "Check kinds", "Alerts"];

/// How long a waiting step may take: the slowest, the alert, needs three
/// failed rounds 5 s apart.
const WAIT: Duration = Duration::from_secs(30);

/// Fields whose numbers vary from run to run.
const LOOSE_NUMBERS: [&str; 3] = ["latency_ms", "latency", "last_latency_ms"];

// ---------------------------------------------------------------------------
// The README, read as steps.

/// What a step's output is compared with.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    /// Nothing shown: the commands must succeed.
    Nothing,
    /// The commands' standard output.
    Output(String),
    /// What a `/ws` client receives while the commands run.
    WebSocket(String),
    /// What the webhook receiver gets.
    Receiver(String),
}

/// One step of the tour.
#[derive(Debug, Clone)]
struct Step {
    /// Line of README.md where its command (or output) starts.
    line: usize,
    section: String,
    /// The shell commands; `None` for a step that only waits.
    command: Option<String>,
    /// Run again until the output matches.
    until: bool,
    expect: Expect,
    /// Line of README.md where the expected output starts.
    expect_line: usize,
}

/// The tour as README.md tells it.
struct Tour {
    /// The steps of the tour sections, in order.
    steps: Vec<Step>,
    /// The line and reason of each `sh` block marked as not run.
    skipped: Vec<(usize, String)>,
}

/// The tour of `readme`.
fn parse_readme(readme: &str) -> Result<Tour, String> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut steps: Vec<Step> = Vec::new();
    let mut skipped = Vec::new();
    let mut section: Option<String> = None;
    let mut markers: Vec<(String, String)> = Vec::new();
    // The last step is a `sh` block nothing but blank lines and markers
    // followed yet: an output block now is its output.
    let mut open = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let n = i + 1;
        if let Some(title) = line.strip_prefix("## ") {
            section = SECTIONS
                .contains(&title.trim())
                .then(|| title.trim().to_owned());
            markers.clear();
            open = false;
            i += 1;
            continue;
        }
        let Some(sec) = section.clone() else {
            i += 1;
            continue;
        };
        if let Some(rest) = line.trim().strip_prefix("<!-- tour:") {
            let body = rest
                .strip_suffix("-->")
                .ok_or(format!("line {n}: a tour marker must end on its line"))?
                .trim();
            let (word, arg) = body.split_once([' ', ':']).unwrap_or((body, ""));
            let arg = arg.trim_start_matches(':').trim().to_owned();
            if !["skip", "until", "run", "inline", "websocket", "receiver"].contains(&word) {
                return Err(format!("line {n}: unknown tour marker {word:?}"));
            }
            markers.push((word.to_owned(), arg));
            i += 1;
            continue;
        }
        if let Some(lang) = line.strip_prefix("```") {
            let start = i + 1;
            let end = (start..lines.len())
                .find(|&j| lines[j].starts_with("```"))
                .ok_or(format!("line {n}: unclosed code block"))?;
            let text = lines[start..end].join("\n");
            let marker = |w: &str| markers.iter().find(|(m, _)| m == w).map(|(_, a)| a.clone());
            if lang.trim() == "sh" {
                if let Some(why) = marker("skip") {
                    skipped.push((n, why));
                    open = false;
                } else {
                    let comments = trailing_outputs(&text);
                    steps.push(Step {
                        line: n + 1,
                        section: sec.clone(),
                        command: Some(text),
                        until: marker("until").is_some(),
                        expect: if comments.is_empty() {
                            Expect::Nothing
                        } else {
                            Expect::Output(comments)
                        },
                        expect_line: n + 1,
                    });
                    open = true;
                }
            } else if let Some(cmd) = marker("run") {
                steps.push(Step {
                    line: n,
                    section: sec.clone(),
                    command: Some(cmd),
                    until: true,
                    expect: Expect::Output(text),
                    expect_line: n + 1,
                });
                open = false;
            } else if marker("receiver").is_some() {
                steps.push(Step {
                    line: n,
                    section: sec.clone(),
                    command: None,
                    until: true,
                    expect: Expect::Receiver(text),
                    expect_line: n + 1,
                });
                open = false;
            } else {
                let last = steps.last_mut().filter(|_| open).ok_or(format!(
                    "line {n}: an output block that follows no command: put it right \
                         after its sh block, or mark it (<!-- tour: run: ... -->)"
                ))?;
                if last.expect != Expect::Nothing {
                    return Err(format!(
                        "line {n}: the sh block above shows its output in comments already"
                    ));
                }
                last.expect = if marker("websocket").is_some() {
                    Expect::WebSocket(text)
                } else {
                    Expect::Output(text)
                };
                last.expect_line = n + 1;
                open = false;
            }
            markers.clear();
            i = end + 1;
            continue;
        }
        if line.trim().is_empty() {
            i += 1;
            continue;
        }
        // Prose.
        open = false;
        if markers.iter().any(|(m, _)| m == "inline") {
            let end = (i..lines.len())
                .find(|&j| lines[j].trim().is_empty())
                .unwrap_or(lines.len());
            let paragraph = lines[i..end].join("\n");
            let spans: Vec<&str> = paragraph.split('`').skip(1).step_by(2).collect();
            let at = spans
                .iter()
                .position(|s| s.starts_with("curl "))
                .ok_or(format!(
                    "line {n}: an inline marker, but no `curl ...` after it"
                ))?;
            let expected = spans
                .get(at + 1)
                .ok_or(format!("line {n}: no code span after the inline command"))?;
            steps.push(Step {
                line: n,
                section: sec.clone(),
                command: Some(spans[at].to_owned()),
                until: true,
                expect: Expect::Output((*expected).to_owned()),
                expect_line: n,
            });
            i = end;
        } else {
            i += 1;
        }
        markers.clear();
    }
    Ok(Tour { steps, skipped })
}

/// The outputs a block's commands show in trailing comments (`curl ...  #
/// {"ok":true}`), one a line.
fn trailing_outputs(block: &str) -> String {
    block
        .lines()
        .filter_map(|l| l.split_once("  # ").map(|(_, c)| c.trim()))
        .filter(|c| c.starts_with('{') || c.starts_with('['))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` with every `from` of `map` replaced by its `to`, in one pass (a
/// replacement is never rewritten again: the monitor's port 54321 must not
/// become the TCP listener's because it starts with 5432).
fn rewrite(text: &str, map: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for (from, to) in map {
            if let Some(after) = rest.strip_prefix(from.as_str()) {
                out.push_str(to);
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

// ---------------------------------------------------------------------------
// Outputs, read as items.

/// A pattern for a JSON value: JSON with `...` for "any more of these".
#[derive(Debug, Clone)]
enum Pat {
    /// `...` in a value's place.
    Any,
    /// null, a boolean or a number.
    Lit(Value),
    Str(String),
    /// Elements, and whether more may follow.
    Arr(Vec<Pat>, bool),
    /// Members, and whether others may be there.
    Obj(Vec<(String, Pat)>, bool),
}

/// One item of an output.
#[derive(Debug, Clone)]
enum Item<J> {
    /// `HTTP/1.1 200 OK` and the headers (names lower-cased).
    Head(String, Vec<(String, String)>),
    Json(J),
    Line(String),
}

/// Reads `text` as items, parsing JSON with `json` (which returns the value
/// and the bytes it used).
fn items<J>(
    text: &str,
    json: impl Fn(&str) -> Result<(J, usize), String>,
) -> Result<Vec<Item<J>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(out);
        }
        if rest.starts_with("HTTP/") {
            let mut lines = Vec::new();
            loop {
                let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
                rest = after;
                let line = line.trim_end_matches('\r');
                if line.is_empty() {
                    break;
                }
                lines.push(line);
                if rest.is_empty() {
                    break;
                }
            }
            let status = lines
                .first()
                .map(|l| l.trim().to_owned())
                .unwrap_or_default();
            let headers = lines[1..]
                .iter()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            out.push(Item::Head(status, headers));
        } else if rest.starts_with(['{', '[']) {
            let (value, used) = json(rest)?;
            out.push(Item::Json(value));
            rest = &rest[used..];
        } else {
            let (line, after) = rest.split_once('\n').unwrap_or((rest, ""));
            out.push(Item::Line(line.trim_end().to_owned()));
            rest = after;
        }
    }
}

/// One JSON value at the start of `text`, as the monitor sent it.
fn actual_json(text: &str) -> Result<(Value, usize), String> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    match stream.next() {
        Some(Ok(v)) => Ok((v, stream.byte_offset())),
        Some(Err(e)) => Err(format!("not JSON: {e}")),
        None => Err("no JSON".to_owned()),
    }
}

/// One JSON pattern at the start of `text`, as the README shows it.
fn pattern(text: &str) -> Result<(Pat, usize), String> {
    let mut p = PatParser { s: text, at: 0 };
    let pat = p.value()?;
    Ok((pat, p.at))
}

struct PatParser<'a> {
    s: &'a str,
    at: usize,
}

impl PatParser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.at..]
    }

    fn ws(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.ws();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn fail<T>(&self, what: &str) -> Result<T, String> {
        let near: String = self.rest().chars().take(30).collect();
        Err(format!("README JSON: expected {what} at {near:?}"))
    }

    fn value(&mut self) -> Result<Pat, String> {
        self.ws();
        if self.eat("...") {
            return Ok(Pat::Any);
        }
        if self.eat("{") {
            let mut members = Vec::new();
            let mut more = false;
            if self.eat("}") {
                return Ok(Pat::Obj(members, more));
            }
            loop {
                if self.eat("...") {
                    more = true;
                } else {
                    self.ws();
                    let key = self.string()?;
                    if !self.eat(":") {
                        return self.fail("':'");
                    }
                    members.push((key, self.value()?));
                }
                if self.eat("}") {
                    return Ok(Pat::Obj(members, more));
                }
                if !self.eat(",") {
                    return self.fail("',' or '}'");
                }
            }
        }
        if self.eat("[") {
            let mut elements = Vec::new();
            let mut more = false;
            if self.eat("]") {
                return Ok(Pat::Arr(elements, more));
            }
            loop {
                if self.eat("...") {
                    more = true;
                } else {
                    elements.push(self.value()?);
                }
                if self.eat("]") {
                    return Ok(Pat::Arr(elements, more));
                }
                if !self.eat(",") {
                    return self.fail("',' or ']'");
                }
            }
        }
        if self.rest().starts_with('"') {
            return Ok(Pat::Str(self.string()?));
        }
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .unwrap_or(self.rest().len());
        match serde_json::from_str::<Value>(&self.rest()[..len]) {
            Ok(v) if len > 0 => {
                self.at += len;
                Ok(Pat::Lit(v))
            }
            _ => self.fail("a JSON value"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let rest = self.rest();
        if !rest.starts_with('"') {
            return self.fail("a string");
        }
        let mut escaped = false;
        for (i, c) in rest.char_indices().skip(1) {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    let s = serde_json::from_str::<String>(&rest[..=i])
                        .map_err(|e| format!("README JSON string: {e}"))?;
                    self.at += i + 1;
                    return Ok(s);
                }
                _ => {}
            }
        }
        self.fail("a closing quote")
    }
}

// ---------------------------------------------------------------------------
// Matching.

/// `text` with every RFC 3339 time (`2026-12-07T18:42:34.557Z`) as `<time>`.
fn times_out(text: &str) -> String {
    let b = text.as_bytes();
    let digits =
        |i: usize, n: usize| i + n <= b.len() && b[i..i + n].iter().all(u8::is_ascii_digit);
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let is_time = digits(i, 4)
            && b.get(i + 4) == Some(&b'-')
            && digits(i + 5, 2)
            && b.get(i + 7) == Some(&b'-')
            && digits(i + 8, 2)
            && b.get(i + 10) == Some(&b'T')
            && digits(i + 11, 2)
            && b.get(i + 13) == Some(&b':')
            && digits(i + 14, 2)
            && b.get(i + 16) == Some(&b':')
            && digits(i + 17, 2);
        if is_time {
            let mut j = i + 19;
            if b.get(j) == Some(&b'.') {
                j += 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
            }
            if b.get(j) == Some(&b'Z') {
                j += 1;
            } else if matches!(b.get(j), Some(b'+' | b'-')) && digits(j + 1, 2) {
                j += 6;
            }
            out.push_str("<time>");
            i = j.min(b.len());
        } else {
            let c = text[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8().max(1);
        }
    }
    out
}

/// Whether `actual` matches `expected`, where `...` in `expected` stands for
/// any text and times are any times.
fn text_matches(expected: &str, actual: &str) -> bool {
    let (expected, actual) = (times_out(expected), times_out(actual));
    let parts: Vec<&str> = expected.split("...").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let mut rest = actual.as_str();
    for (k, part) in parts.iter().enumerate() {
        if k == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if k == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// A header's value with the parts that vary from run to run made equal.
fn header_value(name: &str, value: &str) -> String {
    let mut v = value.to_owned();
    if name == "x-healthmon-timestamp" && v.bytes().all(|c| c.is_ascii_digit()) {
        v = "<seconds>".to_owned();
    }
    if name == "link"
        && let Some(at) = v.find("before=")
    {
        let start = at + "before=".len();
        let end = v[start..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(v.len(), |e| start + e);
        v.replace_range(start..end, "<id>");
    }
    v
}

/// Why `actual` does not match `pat` (the first difference, at `path`).
fn json_diff(pat: &Pat, actual: &Value, path: &str, loose_number: bool) -> Option<String> {
    let show = |v: &Value| {
        let s = v.to_string();
        if s.len() > 120 {
            format!("{}...", s.chars().take(117).collect::<String>())
        } else {
            s
        }
    };
    match (pat, actual) {
        (Pat::Any, _) => None,
        (Pat::Lit(Value::Number(_)), Value::Number(_)) if loose_number => None,
        (Pat::Lit(e), a) if e == a => None,
        (Pat::Str(e), Value::String(a)) if text_matches(e, a) => None,
        (Pat::Obj(members, more), Value::Object(a)) => {
            let is_log = members.iter().any(|(k, _)| k == "service_id");
            for (k, p) in members {
                let at = format!("{path}.{k}");
                let Some(v) = a.get(k) else {
                    return Some(format!("{at}: missing (the answer has no field {k:?})"));
                };
                let loose = LOOSE_NUMBERS.contains(&k.as_str()) || (is_log && k == "id");
                if let Some(d) = json_diff(p, v, &at, loose) {
                    return Some(d);
                }
            }
            if !more && let Some(k) = a.keys().find(|k| !members.iter().any(|(m, _)| m == *k)) {
                return Some(format!(
                    "{path}: unexpected field {k:?} (the README shows all fields, no `...`)"
                ));
            }
            None
        }
        (Pat::Arr(elements, more), Value::Array(a)) => {
            if a.len() < elements.len() || (!more && a.len() != elements.len()) {
                return Some(format!(
                    "{path}: {} elements, the README shows {}{}",
                    a.len(),
                    elements.len(),
                    if *more { " or more" } else { "" }
                ));
            }
            elements
                .iter()
                .zip(a)
                .enumerate()
                .find_map(|(i, (p, v))| json_diff(p, v, &format!("{path}[{i}]"), false))
        }
        (p, a) => Some(format!("{path}: expected {}, got {}", show_pat(p), show(a))),
    }
}

fn show_pat(p: &Pat) -> String {
    match p {
        Pat::Any => "...".to_owned(),
        Pat::Lit(v) => v.to_string(),
        Pat::Str(s) => Value::String(s.clone()).to_string(),
        Pat::Arr(..) => "an array".to_owned(),
        Pat::Obj(..) => "an object".to_owned(),
    }
}

/// Why the output `actual` does not match the README's `expected`.
fn output_diff(expected: &str, actual: &str) -> Option<String> {
    let want = match items(expected, pattern) {
        Ok(w) => w,
        Err(e) => return Some(format!("the README's output cannot be read: {e}")),
    };
    let got = match items(actual, actual_json) {
        Ok(g) => g,
        Err(e) => return Some(format!("the output cannot be read: {e}")),
    };
    for (i, w) in want.iter().enumerate() {
        let n = i + 1;
        let Some(g) = got.get(i) else {
            return Some(format!(
                "item {n}: missing (the README shows {} items, the output has {})",
                want.len(),
                got.len()
            ));
        };
        let diff = match (w, g) {
            (Item::Head(ws, wh), Item::Head(gs, gh)) => head_diff(ws, wh, gs, gh),
            (Item::Json(p), Item::Json(v)) => json_diff(p, v, "$", false),
            (Item::Line(e), Item::Line(a)) => {
                (!text_matches(e, a)).then(|| format!("expected {e:?}, got {a:?}"))
            }
            _ => Some(format!("expected {}, got {}", kind_of(w), kind_of(g))),
        };
        if let Some(d) = diff {
            return Some(format!("item {n} ({}): {d}", kind_of(w)));
        }
    }
    (got.len() > want.len()).then(|| {
        format!(
            "the output has {} items, the README shows {}",
            got.len(),
            want.len()
        )
    })
}

fn kind_of<J>(item: &Item<J>) -> &'static str {
    match item {
        Item::Head(..) => "HTTP status line and headers",
        Item::Json(_) => "JSON",
        Item::Line(_) => "a line of text",
    }
}

fn head_diff(
    want_status: &str,
    want: &[(String, String)],
    got_status: &str,
    got: &[(String, String)],
) -> Option<String> {
    if want_status != got_status {
        return Some(format!(
            "status line {got_status:?}, the README shows {want_status:?}"
        ));
    }
    for (name, value) in want {
        let found = got.iter().find(|(k, _)| k == name);
        let Some((_, v)) = found else {
            return Some(format!(
                "no {name} header (the README shows {name}: {value})"
            ));
        };
        if !text_matches(&header_value(name, value), &header_value(name, v)) {
            return Some(format!("{name}: {v:?}, the README shows {value:?}"));
        }
    }
    None
}

/// Why the messages a `/ws` client got do not contain the README's lines
/// in order, if they do not.
fn stream_diff(expected: &str, got: &[Value]) -> Option<String> {
    let want = match items(expected, pattern) {
        Ok(w) => w,
        Err(e) => return Some(format!("the README's messages cannot be read: {e}")),
    };
    let mut next = 0;
    for (i, w) in want.iter().enumerate() {
        let Item::Json(p) = w else {
            return Some(format!("README message {}: not JSON", i + 1));
        };
        match (next..got.len()).find(|&j| json_diff(p, &got[j], "$", false).is_none()) {
            Some(j) => next = j + 1,
            None => {
                // The closest message: the first of the same type.
                let closest = got[next..]
                    .iter()
                    .chain(got.iter())
                    .find(|g| matches!(p, Pat::Obj(m, _) if m.iter().any(|(k, v)| k == "type" && json_diff(v, &g["type"], "", false).is_none())));
                let why = closest
                    .and_then(|g| json_diff(p, g, "$", false))
                    .unwrap_or_else(|| "no message of its type".to_owned());
                return Some(format!(
                    "README message {} not received (after the ones matched before it); \
                     closest: {why}",
                    i + 1
                ));
            }
        }
    }
    None
}

/// Why the receiver's requests do not match the README's (request lines
/// `METHOD PATH  Name: value  ...`, each followed by a JSON body).
/// A signature (`X-Healthmon-Signature`) is checked, not compared: it must
/// be the HMAC-SHA256 of `timestamp + "." + body` with `secret`, the one the
/// README's channel has, as the README says.
fn receiver_diff(
    expected: &str,
    got: &[common::receiver::Received],
    secret: Option<&str>,
) -> Option<String> {
    let want = match items(expected, pattern) {
        Ok(w) => w,
        Err(e) => return Some(format!("the README's requests cannot be read: {e}")),
    };
    let mut requests = Vec::new();
    let mut it = want.into_iter();
    while let Some(item) = it.next() {
        let (Item::Line(line), Some(Item::Json(body))) = (item, it.next()) else {
            return Some("the README's requests: a request line, then its JSON body".to_owned());
        };
        requests.push((line, body));
    }
    if got.len() != requests.len() {
        return Some(format!(
            "the receiver got {} requests, the README shows {}",
            got.len(),
            requests.len()
        ));
    }
    for (i, ((line, body), r)) in requests.iter().zip(got).enumerate() {
        let n = i + 1;
        let mut parts = line.split("  ");
        let first = parts.next().unwrap_or_default();
        let actual_first = format!("{} {}", r.method, r.path);
        if first != actual_first {
            return Some(format!(
                "request {n}: {actual_first:?}, the README shows {first:?}"
            ));
        }
        for h in parts.filter(|p| !p.trim().is_empty()) {
            let (name, value) = h.split_once(':').unwrap_or((h, ""));
            let name = name.trim().to_ascii_lowercase();
            let Some(v) = r.header(&name) else {
                return Some(format!("request {n}: no {name} header"));
            };
            if name == "x-healthmon-signature" {
                let timestamp = r.header("x-healthmon-timestamp").unwrap_or_default();
                let valid = signature(secret.unwrap_or_default(), timestamp, &r.body);
                if !value.trim().starts_with("sha256=") || v != valid {
                    return Some(format!(
                        "request {n}: {name}: {v:?} is not the HMAC-SHA256 of timestamp.body \
                         with the README's secret {secret:?} ({valid:?}), or the README's \
                         {value:?} is not sha256=..."
                    ));
                }
            } else if !text_matches(&header_value(&name, value.trim()), &header_value(&name, v)) {
                return Some(format!(
                    "request {n}: {name}: {v:?}, the README shows {:?}",
                    value.trim()
                ));
            }
        }
        if let Some(d) = json_diff(body, &r.json(), "$", false) {
            return Some(format!("request {n}'s body: {d}"));
        }
    }
    None
}

/// `sha256=<hex>` of HMAC-SHA256(secret, timestamp + "." + body), computed
/// here rather than by the crate's own code.
fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let tag = ring::hmac::sign(&key, &message);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The webhook secret the README's commands give a channel.
fn readme_secret(steps: &[Step]) -> Option<String> {
    let key = "\"secret\": \"";
    steps
        .iter()
        .filter_map(|s| s.command.as_deref())
        .find_map(|c| {
            let at = c.find(key)? + key.len();
            c[at..].split('"').next().map(str::to_owned)
        })
}

// ---------------------------------------------------------------------------
// Running.

/// What a shell command did.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `script` with `sh -c` in `dir`, with a deadline.
async fn sh(script: String, dir: std::path::PathBuf) -> Ran {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&script)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The targets are all on 127.0.0.1: a proxy of this machine's must
        // not see the requests.
        for v in [
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
        ] {
            cmd.env_remove(v);
        }
        cmd.env("no_proxy", "*");
        let child = cmd.spawn().expect("sh");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(WAIT) {
            Ok(out) => out.expect("sh output"),
            Err(_) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
                panic!("the command did not finish within {WAIT:?}:\n{script}");
            }
        };
        let _ = waiter.join();
        Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("sh task")
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// A failed step, told so that it can be read without running it again.
fn report(step: &Step, expected: &str, got: &str, why: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "README.md's tour drifted: the step at line {} ({}):",
        step.line, step.section
    );
    if let Some(cmd) = &step.command {
        let _ = writeln!(s, "  command:\n{}", indent(cmd));
    }
    let _ = writeln!(
        s,
        "  the README shows (line {}, addresses rewritten):\n{}",
        step.expect_line,
        indent(expected)
    );
    let _ = writeln!(s, "  got:\n{}", indent(got));
    let _ = writeln!(s, "  first difference: {why}");
    s
}

/// The README's push token(s): every `/push/` and 32 hex digits.
fn push_tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (at, _) in text.match_indices("/push/") {
        let token: String = text[at + 6..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        if token.len() == 32 && !out.contains(&token) {
            out.push(token);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_gives_what_the_readme_shows() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let Tour { steps, skipped } =
        parse_readme(&readme).unwrap_or_else(|e| panic!("README.md: {e}"));
    for s in SECTIONS {
        assert!(
            steps.iter().any(|step| step.section == s),
            "no step found in README.md's section {s:?}"
        );
    }
    if Command::new("curl").arg("--version").output().is_err() {
        common::skip::skip("curl", "not found on PATH (the README's commands use it)");
        return;
    }

    // The targets the README names.
    let work = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let ca = TestCa::new("healthmon README tour CA");
    let ca_file = ca.write_pem(work.path(), "ca");
    let tls = TlsTarget::start(ca.server_config_with(
        &["localhost"],
        days_from_now(-1),
        days_from_now(10),
    ))
    .await;
    let Some(dns) = Dnsmasq::start("", &["--mx-host=example.test,mail.example.test,10"]) else {
        return;
    };
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp target");
    let closed = free_port();

    let ca_path = ca_file.display().to_string();
    let monitor = Monitor::start_args(
        Arc::new(tempfile::tempdir().expect("tempdir")),
        &[("HEALTHMON__CHECKS__CA_FILE", ca_path.as_str())],
        &["--bind", "127.0.0.1:0"],
    );
    let mut map: Vec<(String, String)> = [
        ("127.0.0.1:8088", monitor.addr.clone()),
        ("127.0.0.1:9999", receiver.addr.to_string()),
        ("127.0.0.1:9/", format!("127.0.0.1:{closed}/")),
        (
            "127.0.0.1:5432",
            tcp.local_addr().expect("addr").to_string(),
        ),
        ("localhost:8443", format!("localhost:{}", tls.addr.port())),
        ("127.0.0.1:5353", dns.addr.to_string()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b))
    .collect();
    let mut readme_tokens = steps
        .iter()
        .filter_map(|s| s.command.as_deref())
        .flat_map(push_tokens)
        .collect::<Vec<_>>();
    readme_tokens.dedup();
    let mut readme_tokens = readme_tokens.into_iter();

    let secret = readme_secret(&steps);
    let started = Instant::now();
    for step in &steps {
        let command = step.command.as_ref().map(|c| rewrite(c, &map));
        let ws = match &step.expect {
            Expect::WebSocket(_) => {
                let mut client = WsClient::connect(&monitor).await;
                let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
                let sink = Arc::clone(&seen);
                let task = tokio::spawn(async move {
                    while let Some(msg) = client.next_json().await {
                        sink.lock().unwrap().push(msg);
                    }
                });
                Some((task, seen))
            }
            _ => None,
        };
        let begun = Instant::now();
        loop {
            let ran = match &command {
                Some(c) => Some(sh(c.clone(), work.path().to_path_buf()).await),
                None => None,
            };
            let stdout = ran.as_ref().map(|r| r.stdout.clone()).unwrap_or_default();
            let failed = ran.as_ref().filter(|r| r.code != Some(0)).map(|r| {
                format!(
                    "the command exited with {:?}; stderr:\n{}",
                    r.code, r.stderr
                )
            });
            let (expected, got, diff) = match &step.expect {
                Expect::Nothing => (String::new(), stdout.clone(), None),
                Expect::Output(e) => {
                    let e = rewrite(e, &map);
                    let d = output_diff(&e, &stdout);
                    (e, stdout.clone(), d)
                }
                Expect::WebSocket(e) => {
                    let e = rewrite(e, &map);
                    let seen = ws
                        .as_ref()
                        .map(|(_, s)| s.lock().unwrap().clone())
                        .unwrap_or_default();
                    let got = seen
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n");
                    let d = stream_diff(&e, &seen);
                    (e, format!("(messages on /ws)\n{got}"), d)
                }
                Expect::Receiver(e) => {
                    let e = rewrite(e, &map);
                    let got = receiver.received();
                    let text = got
                        .iter()
                        .map(|r| {
                            let heads: String = r
                                .headers
                                .iter()
                                .map(|(k, v)| format!("  {k}: {v}"))
                                .collect();
                            format!(
                                "{} {}{heads}\n{}",
                                r.method,
                                r.path,
                                String::from_utf8_lossy(&r.body)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                    let d = receiver_diff(&e, &got, secret.as_deref());
                    (e, format!("(requests the receiver got)\n{text}"), d)
                }
            };
            let is_ws = matches!(step.expect, Expect::WebSocket(_));
            // The commands of a WebSocket step run once; then only the
            // stream is awaited.
            if failed.is_none() && is_ws && diff.is_some() {
                let rest = WAIT.saturating_sub(begun.elapsed());
                wait_stream(step, &expected, ws.as_ref().map(|(_, s)| s), rest).await;
                break;
            }
            let Some(why) = failed.or(diff) else {
                // A push token the monitor gave stands in for the README's.
                for (at, _) in stdout.match_indices("\"push_url\":\"/push/") {
                    let token: String = stdout[at + 18..]
                        .chars()
                        .take_while(char::is_ascii_hexdigit)
                        .collect();
                    if let Some(readme_token) = readme_tokens.next() {
                        map.push((readme_token, token));
                    }
                }
                break;
            };
            // A step that runs once, or one that ran out of time, fails now;
            // a waiting one tries again (its commands only read).
            if !step.until || begun.elapsed() > WAIT {
                let waited = if step.until {
                    format!(" (still so after {WAIT:?})")
                } else {
                    String::new()
                };
                panic!(
                    "{}",
                    report(step, &expected, &got, &format!("{why}{waited}"))
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let Some((task, _)) = ws {
            task.abort();
        }
    }
    println!(
        "README tour: {} steps matched in {:.1?}; not run: {}",
        steps.len(),
        started.elapsed(),
        if skipped.is_empty() {
            "none".to_owned()
        } else {
            skipped
                .iter()
                .map(|(line, why)| format!("line {line} ({why})"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
}

/// Waits until the `/ws` messages contain the README's, up to `limit`.
async fn wait_stream(
    step: &Step,
    expected: &str,
    seen: Option<&Arc<Mutex<Vec<Value>>>>,
    limit: Duration,
) {
    let start = Instant::now();
    loop {
        let got = seen.map(|s| s.lock().unwrap().clone()).unwrap_or_default();
        let Some(why) = stream_diff(expected, &got) else {
            return;
        };
        if start.elapsed() > limit {
            let text = got
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "{}",
                report(step, expected, &format!("(messages on /ws)\n{text}"), &why)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The comparison can fail: each kind of drift the tour guards against
/// (a field renamed, a status or error text changed, a status line or
/// header changed, an item more or less) is a difference, and what may
/// vary (times, latencies, log ids, `...`) is not.
#[test]
fn drift_in_fields_statuses_errors_and_heads_is_a_difference() {
    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 99\r\nlink: </services/1/logs?limit=2&before=9>; \
        rel=\"next\"\r\ncontent-type: application/json\r\n\r\n\
        [{\"id\":10,\"service_id\":1,\"status\":\"DOWN\",\"latency_ms\":3,\"error\":\"connect: \
        connection refused\",\"checked_at\":\"2026-12-07T19:16:50.607Z\"}]{\"ok\":true}";
    let readme = "HTTP/1.1 200 OK\nlink: </services/1/logs?limit=2&before=3>; rel=\"next\"\n\n\
        [{\"id\":4,\"service_id\":1,\"status\":\"DOWN\",\"latency_ms\":0,\
        \"error\":\"connect: connection refused\",...}]\n{\"ok\":true}";
    assert_eq!(output_diff(readme, answer), None);

    for (from, to, says) in [
        (
            "\"status\":\"DOWN\"",
            "\"status\":\"UP\"",
            "$[0].status: expected \"UP\"",
        ),
        ("\"latency_ms\"", "\"latency\"", "$[0].latency: missing"),
        ("connection refused", "connection reset", "$[0].error"),
        ("200 OK", "201 Created", "status line"),
        ("rel=\"next\"", "rel=\"prev\"", "link:"),
        ("{\"ok\":true}", "{\"ok\":true,\"n\":1}", "$.n: missing"),
        (
            "\n{\"ok\":true}",
            "",
            "the output has 3 items, the README shows 2",
        ),
        (",...}]", "}]", "unexpected field \"checked_at\""),
    ] {
        let drifted = readme.replacen(from, to, 1);
        assert_ne!(drifted, readme, "{from} is not in the sample");
        let diff = output_diff(&drifted, answer).unwrap_or_default();
        assert!(diff.contains(says), "{from} -> {to}: {diff:?}");
    }
}
