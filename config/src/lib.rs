//! Archway's configuration: one TOML file plus `ARCHWAY_*` environment overrides.
//!
//! Each library crate owns its section (`[server]` the gateway, `[catalog]` the catalogue,
//! `[backends.*]`, `[workspaces]` and `[limits]` the dataplane, `[[volumes]]` the catalogue's
//! volume records); this crate composes them, applies environment overrides, rejects unknown
//! keys, and reports every problem at once with its key path and, where the file has it, its
//! line. `doc/configuration.md` documents every key; `config/archway.example.toml` is the
//! commented example that `archway config example` prints.
//!
//! Environment overrides: `ARCHWAY_<SECTION>__<KEY>[__<KEY>…]=value`, with `__` between path
//! segments (names lowercased), e.g. `ARCHWAY_SERVER__LISTEN=0.0.0.0:9000` or
//! `ARCHWAY_BACKENDS__ARCHIVE__SECRET_ACCESS_KEY=…`. A value is read as a TOML value when it
//! parses as one (numbers, booleans, arrays) and as a string otherwise.

pub mod credentials;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use archway_catalog::{CatalogConfig, NewVolume, normalize_prefix, validate_volume_id};
use archway_dataplane::{BackendConfig, DataplaneConfig, LimitsConfig, WorkspacesConfig};
use archway_gateway::ServerConfig;
use serde::{Deserialize, Serialize};

/// The commented example configuration, kept in the repository and printed by
/// `archway config example`.
pub const EXAMPLE: &str = include_str!("../archway.example.toml");

/// The names of the built-in backends the embedded default adds under the data directory.
pub const DEMO_BACKEND: &str = "demo";
pub const WORKSPACES_BACKEND: &str = "workspaces";

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub catalog: CatalogConfig,
    #[serde(default)]
    pub backends: BTreeMap<String, BackendConfig>,
    #[serde(default)]
    pub workspaces: WorkspacesConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub cache: archway_dataplane::cache::CacheConfig,
    /// Volumes declared here are created, or brought in line, in the catalogue at start.
    #[serde(default)]
    pub volumes: Vec<NewVolume>,
    /// The audit trail: one JSON line per request.
    #[serde(default)]
    pub audit: archway_dataplane::audit::AuditConfig,
    /// Identity providers (OpenID Connect) and temporary S3 credentials.
    #[serde(default)]
    pub auth: archway_gateway::AuthConfig,
}

/// One thing wrong with a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key path, like `backends.archive.url` or `volumes[2].id`; empty for the whole file.
    pub path: String,
    /// The line in the file, where the problem has one.
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found, with the file they were found in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = self
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the configuration".into());
        let n = self.problems.len();
        write!(f, "{source}: {n} problem{}", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  ")?;
            if let (Some(file), Some(line)) = (&self.file, p.line) {
                write!(f, "{}:{line}: ", file.display())?;
            }
            if !p.path.is_empty() {
                write!(f, "{}: ", p.path)?;
            }
            write!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

impl Config {
    /// Loads `file` (None: defaults only) with overrides from `env` (pass `std::env::vars()`).
    /// Blocking: configuration is read once, at start-up, before anything is served.
    #[allow(clippy::disallowed_methods)] // blocking by contract, see above
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: Some(path.to_path_buf()),
                problems: vec![Problem {
                    path: String::new(),
                    line: None,
                    message: format!("cannot read the file: {e}"),
                }],
            })?,
            None => String::new(),
        };
        Self::parse(&text, env).map_err(|problems| ConfigError {
            file: file.map(Path::to_path_buf),
            problems,
        })
    }

    /// Parses TOML `text` with overrides from `env`; every problem at once.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Vec<Problem>> {
        let mut table: toml::Table = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                return Err(vec![Problem {
                    path: String::new(),
                    line: e.span().map(|s| line_at(text, s.start)),
                    message: e.message().trim().to_string(),
                }]);
            }
        };
        let mut problems = Vec::new();
        let from_env = apply_env(&mut table, env, &mut problems);
        let lines = LineIndex::new(text);

        let mut unknown: Vec<String> = Vec::new();
        let value = toml::Value::Table(table);
        let mut on_unknown = |p: serde_ignored::Path| unknown.push(ignored_path(&p));
        let de = serde_ignored::Deserializer::new(value, &mut on_unknown);
        let parsed: Result<Config, _> = serde_path_to_error::deserialize(de);
        let mut problem = |path: String, message: String| {
            let (line, message) = match from_env.get(&path) {
                Some(var) => (None, format!("{message} (from {var})")),
                None => (lines.line_of(&path), message),
            };
            problems.push(Problem {
                path,
                line,
                message,
            });
        };
        for path in unknown {
            problem(path, "unknown key".into());
        }
        let config = match parsed {
            Ok(c) => c,
            Err(e) => {
                let path = error_path(e.path());
                problem(path, e.into_inner().message().trim().to_string());
                return Err(problems);
            }
        };
        for (path, message) in config.problems() {
            problem(path, message);
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            problems.sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.path.clone()));
            Err(problems)
        }
    }

    /// Semantic problems, as (key path, message).
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut section = |name: &str, items: Vec<(String, String)>| {
            for (k, m) in items {
                out.push((format!("{name}.{k}"), m));
            }
        };
        section("server", self.server.problems());
        section("catalog", self.catalog.problems());
        section("limits", self.limits.problems());
        section("cache", self.cache.problems());
        section("audit", self.audit.problems());
        section("auth", self.auth.problems());
        for (name, backend) in &self.backends {
            section(&format!("backends.{name}"), backend.problems());
        }
        for name in self.backends.keys() {
            let ok = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !ok {
                out.push((
                    format!("backends.{name}"),
                    "a backend name is lowercase letters, digits, '-' and '_'".into(),
                ));
            }
        }
        if let Some(ws) = &self.workspaces.backend
            && !self.backends.contains_key(ws)
            && ws != WORKSPACES_BACKEND
        {
            out.push((
                "workspaces.backend".into(),
                format!("no backend named `{ws}` is configured"),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, v) in self.volumes.iter().enumerate() {
            let at = |k: &str| format!("volumes[{i}].{k}");
            if let Err(e) = validate_volume_id(&v.id) {
                out.push((at("id"), e.to_string()));
            }
            if !seen.insert(v.id.clone()) {
                out.push((at("id"), format!("volume `{}` is declared twice", v.id)));
            }
            if !self.backends.contains_key(&v.backend)
                && v.backend != DEMO_BACKEND
                && v.backend != WORKSPACES_BACKEND
            {
                out.push((
                    at("backend"),
                    format!("no backend named `{}` is configured", v.backend),
                ));
            }
            if let Err(e) = normalize_prefix(&v.prefix) {
                out.push((at("prefix"), e.to_string()));
            }
        }
        out
    }

    /// Adds the built-in `workspaces` backend (and, for the embedded default, `demo`) under the
    /// data directory, unless the configuration names backends of those names itself.
    pub fn with_builtin_backends(mut self, demo: bool) -> Self {
        let data = absolute(&self.server.data_dir);
        let mut add = |name: &str| {
            self.backends
                .entry(name.to_string())
                .or_insert_with(|| BackendConfig {
                    url: format!("file://{}", data.join(name).display()),
                    ..Default::default()
                });
        };
        add(WORKSPACES_BACKEND);
        if demo {
            add(DEMO_BACKEND);
        }
        self
    }

    /// The dataplane's share of the configuration.
    pub fn dataplane(&self) -> DataplaneConfig {
        DataplaneConfig {
            backends: self.backends.clone(),
            workspaces: self.workspaces.clone(),
            limits: self.limits.clone(),
            spool_dir: absolute(&self.server.data_dir).join("uploads"),
            cache: archway_dataplane::cache::CacheConfig {
                dir: Some(
                    self.cache
                        .dir
                        .clone()
                        .unwrap_or_else(|| absolute(&self.server.data_dir).join("cache")),
                ),
                ..self.cache.clone()
            },
        }
    }
}

/// `path` made absolute against the current directory, without `.` components (so `file://`
/// URLs are well formed and messages read cleanly). Symlinks are left alone.
pub fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// Applies `ARCHWAY_A__B=…` overrides; returns which key path came from which variable.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, String> {
    let mut from_env = BTreeMap::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("ARCHWAY_") && k.contains("__"))
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let segments: Vec<String> = var["ARCHWAY_".len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect();
        if segments.iter().any(String::is_empty) {
            problems.push(Problem {
                path: String::new(),
                line: None,
                message: format!("environment variable {var}: empty key segment"),
            });
            continue;
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        if insert_at(table, &segments, value) {
            from_env.insert(segments.join("."), var);
        } else {
            problems.push(Problem {
                path: segments.join("."),
                line: None,
                message: format!("{var} sets a key inside a value that is not a table"),
            });
        }
    }
    from_env
}

/// Sets `path` in `table`, creating tables on the way; false if a value on the way is no table.
fn insert_at(table: &mut toml::Table, path: &[String], value: toml::Value) -> bool {
    match path {
        [] => false,
        [last] => {
            table.insert(last.clone(), value);
            true
        }
        [first, rest @ ..] => match table
            .entry(first.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => insert_at(t, rest, value),
            _ => false,
        },
    }
}

fn ignored_path(p: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    fn walk(p: &P, out: &mut String) {
        match p {
            P::Root => {}
            P::Seq { parent, index } => {
                walk(parent, out);
                out.push_str(&format!("[{index}]"));
            }
            P::Map { parent, key } => {
                walk(parent, out);
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
                walk(parent, out)
            }
        }
    }
    let mut s = String::new();
    walk(p, &mut s);
    s
}

fn error_path(p: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut s = String::new();
    for seg in p.iter() {
        match seg {
            Segment::Seq { index } => s.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    s
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Finds the line of a key path in the file's text, via the parser's spans.
struct LineIndex<'a> {
    text: &'a str,
    root: Option<toml::Spanned<toml::de::DeTable<'a>>>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            root: toml::de::DeTable::parse(text).ok(),
        }
    }

    /// The line of the deepest part of `path` the file has.
    fn line_of(&self, path: &str) -> Option<usize> {
        let root = self.root.as_ref()?;
        let mut table = root.get_ref();
        let mut best: Option<usize> = None;
        let segments = split_path(path);
        let mut i = 0;
        while i < segments.len() {
            let PathSeg::Key(key) = &segments[i] else {
                return best;
            };
            let (k, v) = table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == key.as_str())?;
            best = Some(line_at(self.text, k.span().start));
            let mut value = v.get_ref();
            i += 1;
            while let Some(PathSeg::Index(n)) = segments.get(i) {
                match value {
                    toml::de::DeValue::Array(items) => {
                        let item = items.get(*n)?;
                        best = Some(line_at(self.text, item.span().start));
                        value = item.get_ref();
                    }
                    _ => return best,
                }
                i += 1;
            }
            match value {
                toml::de::DeValue::Table(t) => table = t,
                _ => return best,
            }
        }
        best
    }
}

enum PathSeg {
    Key(String),
    Index(usize),
}

fn split_path(path: &str) -> Vec<PathSeg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            if i > 0 {
                out.push(PathSeg::Key(rest[..i].to_string()));
            }
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(end) = stripped.find(']') else { break };
                if let Ok(n) = stripped[..end].parse() {
                    out.push(PathSeg::Index(n));
                }
                rest = &stripped[end + 1..];
            }
        } else if !rest.is_empty() {
            out.push(PathSeg::Key(rest.to_string()));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn empty_is_the_default() {
        let c = Config::parse("", no_env()).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9000");
        assert_eq!(c.server.data_dir, PathBuf::from("./archway-data"));
        assert!(c.backends.is_empty());
    }

    #[test]
    fn the_example_is_valid() {
        let c = Config::parse(EXAMPLE, no_env()).unwrap_or_else(|p| panic!("{p:#?}"));
        assert!(c.backends.contains_key("esa-archive"));
        assert!(!c.volumes.is_empty());
    }

    #[test]
    fn the_examples_commented_oidc_issuer_is_valid_when_uncommented() {
        // The `[[auth.oidc]]` entry is commented out (there is no issuer to trust by default);
        // uncommented, every key it shows must parse and pass the checks.
        let mut inside = false;
        let text: String = EXAMPLE
            .lines()
            .map(|line| {
                if line == "# [[auth.oidc]]" {
                    inside = true;
                } else if !line.starts_with('#') {
                    inside = false;
                }
                match line.strip_prefix("# ") {
                    Some(rest) if inside && !rest.starts_with("# ") => rest.to_string(),
                    _ => line.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::parse(&text, no_env()).unwrap_or_else(|p| panic!("{p:#?}"));
        let o = &c.auth.oidc[..];
        assert_eq!(o.len(), 1, "{text}");
        assert_eq!(o[0].issuer, "https://sso.example.org/realms/datalabs");
        assert_eq!(o[0].groups_claim.as_deref(), Some("groups"));
        assert_eq!(
            c.auth.sts_max_duration,
            std::time::Duration::from_secs(12 * 3600)
        );
    }

    #[test]
    fn every_problem_is_reported_with_path_and_line() {
        let text = r#"
[server]
listen = "127.0.0.1:9000"
lisen = "oops"

[backends.archive]
url = "ftp//not-a-url"

[backends.bucket]
url = "s3://bucket"
endpiont = "http://127.0.0.1:1"

[[volumes]]
id = "Bad_ID"
backend = "nowhere"
titel = "x"
"#;
        let problems = Config::parse(text, no_env()).unwrap_err();
        let got: Vec<(String, Option<usize>)> =
            problems.iter().map(|p| (p.path.clone(), p.line)).collect();
        assert!(got.contains(&("server.lisen".into(), Some(4))), "{got:?}");
        assert!(
            got.contains(&("backends.archive.url".into(), Some(7))),
            "{got:?}"
        );
        assert!(
            got.contains(&("backends.bucket.endpiont".into(), Some(11))),
            "{got:?}"
        );
        assert!(got.contains(&("volumes[0].id".into(), Some(14))), "{got:?}");
        assert!(
            got.contains(&("volumes[0].backend".into(), Some(15))),
            "{got:?}"
        );
        assert!(
            got.contains(&("volumes[0].titel".into(), Some(16))),
            "{got:?}"
        );
        let unknown = problems.iter().find(|p| p.path == "server.lisen").unwrap();
        assert_eq!(unknown.message, "unknown key");
        let url = problems
            .iter()
            .find(|p| p.path == "backends.archive.url")
            .unwrap();
        assert!(url.message.contains("ftp//not-a-url"), "{}", url.message);
    }

    #[test]
    fn type_errors_name_the_key() {
        let problems = Config::parse("[limits]\nlist_max_keys = \"many\"\n", no_env()).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "limits.list_max_keys");
        assert_eq!(problems[0].line, Some(2));
        assert!(
            problems[0].message.contains("invalid type"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let problems = Config::parse("[server]\nlisten = \n", no_env()).unwrap_err();
        assert_eq!(problems[0].line, Some(2));
    }

    #[test]
    fn environment_overrides() {
        let env = vec![
            (
                "ARCHWAY_SERVER__LISTEN".to_string(),
                "0.0.0.0:9100".to_string(),
            ),
            (
                "ARCHWAY_LIMITS__LIST_MAX_KEYS".to_string(),
                "250".to_string(),
            ),
            (
                "ARCHWAY_BACKENDS__ARCHIVE__URL".to_string(),
                "file:///srv/archive".to_string(),
            ),
            (
                "ARCHWAY_GATEWAY".to_string(),
                "ignored: not a config key".to_string(),
            ),
        ];
        let c = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\n", env).unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:9100");
        assert_eq!(c.limits.list_max_keys, 250);
        assert_eq!(c.backends["archive"].url, "file:///srv/archive");
    }

    #[test]
    fn environment_problems_name_the_variable() {
        let env = vec![
            ("ARCHWAY_SERVER__LISTEN".to_string(), "nowhere".to_string()),
            ("ARCHWAY_SERVR__LISTEN".to_string(), "x".to_string()),
        ];
        let problems = Config::parse("", env).unwrap_err();
        let listen = problems.iter().find(|p| p.path == "server.listen").unwrap();
        assert!(
            listen.message.contains("ARCHWAY_SERVER__LISTEN"),
            "{}",
            listen.message
        );
        assert!(problems.iter().any(|p| p.path == "servr"), "{problems:?}");
    }

    #[test]
    fn display_lists_every_problem() {
        let err = ConfigError {
            file: Some("a.toml".into()),
            problems: vec![
                Problem {
                    path: "server.lisen".into(),
                    line: Some(3),
                    message: "unknown key".into(),
                },
                Problem {
                    path: "backends.x.url".into(),
                    line: None,
                    message: "bad".into(),
                },
            ],
        };
        let text = err.to_string();
        assert!(text.contains("a.toml: 2 problems"), "{text}");
        assert!(
            text.contains("a.toml:3: server.lisen: unknown key"),
            "{text}"
        );
        assert!(text.contains("backends.x.url: bad"), "{text}");
    }

    #[test]
    fn builtin_backends_live_in_the_data_dir() {
        let c = Config::parse("[server]\ndata_dir = \"/srv/archway\"\n", no_env())
            .unwrap()
            .with_builtin_backends(true);
        assert_eq!(c.backends["demo"].url, "file:///srv/archway/demo");
        assert_eq!(
            c.backends["workspaces"].url,
            "file:///srv/archway/workspaces"
        );
    }
}
