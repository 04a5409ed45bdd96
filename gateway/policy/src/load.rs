//! Reading and checking a policy directory: schema, `*.cedar` files, `reasons.toml`.
//!
//! Every problem is reported as `file:line: message`. Nothing here is on the request path.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use cedar_policy::{
    Effect, EntityId, Policy, PolicyId, PolicySet, Schema, SchemaFragment, ValidationMode,
    Validator,
};
use sha2::{Digest, Sha256};

use super::reasons::Reasons;

pub const SCHEMA_FILE: &str = "schema.cedarschema";
pub const REASONS_FILE: &str = "reasons.toml";

/// The `@priority` of a forbid without one: after every forbid that has one.
pub const DEFAULT_PRIORITY: i64 = 1000;

/// All the problems found in a policy directory, one `file:line: message` each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<String>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(e)?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// Where a policy starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// File name inside the policy directory.
    pub file: String,
    /// 1-based line of the policy's first code (after comments).
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What the engine needs from a policy besides Cedar's own view of it.
#[derive(Debug, Clone)]
pub struct PolicyMeta {
    pub forbid: bool,
    pub priority: i64,
    pub reason: Option<String>,
    /// `@step_up_max_age("N")`: a fresh factor (at most N seconds old) lifts this forbid.
    pub step_up_max_age: Option<u64>,
    pub location: Location,
}

/// A parsed, re-identified and validated policy directory.
pub struct Compiled {
    pub schema: Schema,
    pub policies: PolicySet,
    pub meta: HashMap<PolicyId, PolicyMeta>,
    pub reasons: Reasons,
    /// hex SHA-256 over the set's files (names and contents, sorted by name).
    pub version: String,
    pub warnings: Vec<String>,
    /// Actions marked `@downstream` in the schema: the ones a route may name.
    pub downstream_actions: Vec<String>,
    pub actions: Vec<String>,
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Where in `source` a Cedar error points, as a byte offset. The public API only exposes spans
/// through `miette::Diagnostic`, which this crate does not depend on, so the position is read
/// from the error's `Debug` form (a token offset, or the quoted source snippet of a `Loc`);
/// when nothing is found the caller falls back to the start of the statement.
fn error_offset(err: &dyn fmt::Debug, source: &str) -> Option<usize> {
    let text = format!("{err:?}");
    let number_after = |marker: &str| -> Option<usize> {
        let start = text.find(marker)? + marker.len();
        let digits: String = text[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    if let Some(snippet_start) = text.find("Loc(`").map(|i| i + "Loc(`".len())
        && let Some(len) = text[snippet_start..].find("`)")
    {
        let snippet = &text[snippet_start..snippet_start + len];
        if let Some(at) = source.find(snippet).filter(|_| !snippet.is_empty()) {
            return Some(at);
        }
    }
    number_after("token: (")
        .or_else(|| number_after("location: "))
        .or_else(|| number_after("offset: SourceOffset("))
}

/// One top-level statement of a `.cedar` file: byte range and where its code starts
/// (after leading blank lines and comments).
struct Statement<'a> {
    text: &'a str,
    start: usize,
    code_start: usize,
}

/// Splits a `.cedar` file at top-level `;`, skipping strings and `//` comments. Trailing text
/// without a `;` is returned as a statement of its own so that the parser reports it.
fn split_statements(src: &str) -> Vec<Statement<'_>> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut code_start: Option<usize> = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while bytes.get(i).is_some_and(|b| *b != b'\n') {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                code_start.get_or_insert(i);
                i += 1;
                while let Some(&b) = bytes.get(i).filter(|b| **b != b'"') {
                    if b == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b';' => {
                let cs = code_start.unwrap_or(i);
                out.push(Statement {
                    text: &src[start..=i],
                    start,
                    code_start: cs,
                });
                start = i + 1;
                code_start = None;
            }
            b if b.is_ascii_whitespace() => {}
            _ => {
                code_start.get_or_insert(i);
            }
        }
        i += 1;
    }
    if let Some(cs) = code_start {
        out.push(Statement {
            text: &src[start..],
            start,
            code_start: cs,
        });
    }
    out
}

fn parse_priority(value: &str) -> Option<i64> {
    value.trim().parse().ok()
}

/// Reads, parses, re-identifies and validates the policy directory `dir`.
pub fn compile(dir: &Path) -> Result<Compiled, LoadErrors> {
    let dir_name = dir.display().to_string();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    let listing = std::fs::read_dir(dir).map_err(|e| {
        LoadErrors(vec![format!(
            "{dir_name}: cannot read the policy directory: {e}"
        )])
    })?;
    let mut cedar_files = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| LoadErrors(vec![format!("{dir_name}: {e}")]))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".cedar") && entry.path().is_file() {
            cedar_files.push(name);
        }
    }
    cedar_files.sort();

    // Every file of the set, by name: the version hashes exactly these.
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let read = |name: &str| std::fs::read_to_string(dir.join(name));
    match read(SCHEMA_FILE) {
        Ok(text) => {
            files.insert(SCHEMA_FILE.to_string(), text);
        }
        Err(e) => errors.push(format!("{SCHEMA_FILE}: cannot read: {e}")),
    }
    match read(REASONS_FILE) {
        Ok(text) => {
            files.insert(REASONS_FILE.to_string(), text);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => warnings.push(format!(
            "{REASONS_FILE}: missing; every reason gets the generic message"
        )),
        Err(e) => errors.push(format!("{REASONS_FILE}: cannot read: {e}")),
    }
    for name in &cedar_files {
        match read(name) {
            Ok(text) => {
                files.insert(name.clone(), text);
            }
            Err(e) => errors.push(format!("{name}: cannot read: {e}")),
        }
    }
    if cedar_files.is_empty() {
        errors.push(format!("{dir_name}: no *.cedar policy files"));
    }

    let mut hasher = Sha256::new();
    for (name, text) in &files {
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    let version = hex::encode(hasher.finalize());

    // Schema.
    let schema_parts = files.get(SCHEMA_FILE).and_then(|text| {
        let parsed = SchemaFragment::from_cedarschema_str(text)
            .map_err(Box::new)
            .and_then(|(fragment, w)| {
                warnings.extend(w.map(|w| format!("{SCHEMA_FILE}: {w}")));
                let schema = Schema::from_schema_fragments([fragment.clone()])
                    .map_err(|e| Box::new(cedar_policy::CedarSchemaError::from(e)))?;
                Ok((fragment, schema))
            });
        match parsed {
            Ok(parts) => Some(parts),
            Err(e) => {
                let line = error_offset(&e, text)
                    .map(|o| line_of(text, o))
                    .unwrap_or(1);
                errors.push(format!("{SCHEMA_FILE}:{line}: {e}"));
                None
            }
        }
    });

    let mut downstream_actions = Vec::new();
    let mut actions = Vec::new();
    if let Some((fragment, schema)) = &schema_parts {
        if let Some(group) = schema.action_groups().next() {
            errors.push(format!(
                "{SCHEMA_FILE}:{}: action groups are not supported (`{group}` has members): list the actions in each policy instead",
                files
                    .get(SCHEMA_FILE)
                    .and_then(|t| t.find(group.id().unescaped()).map(|o| line_of(t, o)))
                    .unwrap_or(1)
            ));
        }
        for action in schema.actions() {
            let name = action.id().unescaped().to_string();
            if fragment
                .action_annotation(None, &EntityId::new(&name), "downstream")
                .is_some()
            {
                downstream_actions.push(name.clone());
            }
            actions.push(name);
        }
        actions.sort();
        downstream_actions.sort();
    }

    // Reasons.
    let reasons = match files.get(REASONS_FILE) {
        Some(text) => match Reasons::parse(text) {
            Ok(r) => r,
            Err((line, msg)) => {
                errors.push(format!("{REASONS_FILE}:{line}: {msg}"));
                Reasons::default()
            }
        },
        None => Reasons::default(),
    };

    // Policies: parse each statement on its own so that every error has its line, then re-id
    // from `@id` (Cedar does not apply it).
    let mut policies = PolicySet::new();
    let mut meta: HashMap<PolicyId, PolicyMeta> = HashMap::new();
    // policy id -> (file, offset of its statement), to place validation errors.
    let mut starts: HashMap<PolicyId, (String, usize)> = HashMap::new();
    for name in &cedar_files {
        let Some(text) = files.get(name) else {
            continue;
        };
        // Lines counted from the previous statement on: counting from the file's start for
        // each statement made loading 10,000 policies quadratic (seconds, on every reload).
        let (mut counted_to, mut line) = (0usize, 1usize);
        for stmt in split_statements(text) {
            let upto = stmt.code_start.max(counted_to);
            line += text
                .as_bytes()
                .get(counted_to..upto)
                .map_or(0, |b| b.iter().filter(|c| **c == b'\n').count());
            counted_to = upto;
            let line = line;
            let at = Location {
                file: name.clone(),
                line,
            };
            let policy = match Policy::parse(None, stmt.text) {
                Ok(p) => p,
                Err(e) => {
                    for err in e.iter() {
                        let line = error_offset(err, stmt.text)
                            .map(|o| line_of(text, stmt.start + o))
                            .unwrap_or(line);
                        errors.push(format!("{name}:{line}: {err}"));
                    }
                    continue;
                }
            };
            let Some(id) = policy.annotation("id").map(str::to_string) else {
                errors.push(format!(
                    "{at}: policy has no @id(\"…\") annotation; give every policy a unique id"
                ));
                continue;
            };
            if id.trim().is_empty() {
                errors.push(format!("{at}: @id is empty"));
                continue;
            }
            let pid = PolicyId::new(&id);
            if let Some(first) = meta.get(&pid) {
                errors.push(format!(
                    "{at}: duplicate @id(\"{id}\"), first used at {}",
                    first.location
                ));
                continue;
            }
            let forbid = policy.effect() == Effect::Forbid;
            let reason = policy.annotation("reason").map(str::to_string);
            if forbid && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                errors.push(format!(
                    "{at}: forbid policy `{id}` has no @reason(\"<error code>\")"
                ));
            }
            if let Some(code) = &reason
                && !code.trim().is_empty()
                && !reasons.contains(code)
            {
                warnings.push(format!(
                    "{at}: @reason(\"{code}\") of `{id}` has no entry in {REASONS_FILE}; the generic message is used"
                ));
            }
            let priority = match policy.annotation("priority") {
                None => DEFAULT_PRIORITY,
                Some(p) => match parse_priority(p) {
                    Some(n) => n,
                    None => {
                        errors.push(format!(
                            "{at}: @priority(\"{p}\") of `{id}` is not an integer"
                        ));
                        DEFAULT_PRIORITY
                    }
                },
            };
            let step_up_max_age = match policy.annotation("step_up_max_age") {
                None => None,
                Some(n) => match n.trim().parse::<u64>() {
                    Ok(secs) if secs > 0 && forbid => Some(secs),
                    _ => {
                        errors.push(format!(
                            "{at}: @step_up_max_age(\"{n}\") of `{id}`: give a forbid policy a \
                             whole number of seconds above 0"
                        ));
                        None
                    }
                },
            };
            let policy = policy.new_id(pid.clone());
            if let Err(e) = policies.add(policy) {
                errors.push(format!("{at}: {e}"));
                continue;
            }
            starts.insert(pid.clone(), (name.clone(), stmt.start));
            meta.insert(
                pid,
                PolicyMeta {
                    forbid,
                    priority,
                    reason,
                    step_up_max_age,
                    location: at,
                },
            );
        }
    }

    if let Some((_, schema)) = &schema_parts {
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        let place = |pid: &PolicyId, err: &dyn fmt::Debug| -> String {
            match starts.get(pid) {
                Some((file, start)) => {
                    let text = files.get(file).map(String::as_str).unwrap_or("");
                    let stmt = text.get(*start..).unwrap_or("");
                    let line = error_offset(err, stmt)
                        .map(|o| line_of(text, start + o))
                        .or_else(|| meta.get(pid).map(|m| m.location.line))
                        .unwrap_or(1);
                    format!("{file}:{line}")
                }
                None => dir_name.clone(),
            }
        };
        for e in result.validation_errors() {
            errors.push(format!("{}: {e}", place(e.policy_id(), e)));
        }
        for w in result.validation_warnings() {
            warnings.push(format!("{}: {w}", place(w.policy_id(), w)));
        }
    }

    match schema_parts {
        Some((_, schema)) if errors.is_empty() => Ok(Compiled {
            schema,
            policies,
            meta,
            reasons,
            version,
            warnings,
            downstream_actions,
            actions,
        }),
        _ => Err(LoadErrors(errors)),
    }
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_strings_and_comments() {
        let src = "// a; comment\n@id(\"a;b\")\npermit(principal, action, resource);\n\n  forbid(principal, action, resource) when { \"x;\" == \"y\" };\ntrailing";
        let s = split_statements(src);
        assert_eq!(s.len(), 3);
        assert_eq!(line_of(src, s[0].code_start), 2);
        assert_eq!(line_of(src, s[1].code_start), 5);
        assert_eq!(s[2].text.trim(), "trailing");
    }

    #[test]
    fn line_of_counts_newlines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
