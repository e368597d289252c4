//! AWS shared credentials files: `~/.aws/credentials`, and the one `archway serve` writes on
//! first start as `<data-dir>/credentials`. `archway mount` reads them as the aws cli does:
//! sections `[name]` (or `[profile name]`, as in the config file), `key = value` lines, values
//! taken literally (no quotes or escapes: a secret is what stands after `=`, trimmed).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The profiles of one credentials file, each a map of its keys (trimmed, as written).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CredentialsFile {
    profiles: BTreeMap<String, BTreeMap<String, String>>,
}

/// Why a credentials file could not be read: the line and column, and what is wrong there.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}, column {column}: {message}")]
pub struct CredentialsError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl CredentialsFile {
    /// Parses a credentials file. Keys outside any section are ignored, as the aws cli does.
    pub fn parse(text: &str) -> Result<Self, CredentialsError> {
        // The INI parser reads a header's name up to its `]` across line ends; a header is
        // one line, so an unclosed one is reported where it is.
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.starts_with('[') && !line.ends_with(']') {
                return Err(CredentialsError {
                    line: n + 1,
                    column: 1,
                    message: "a profile header without its closing `]`".into(),
                });
            }
        }
        let options = ini::ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            ..Default::default()
        };
        let parsed = ini::Ini::load_from_str_opt(text, options).map_err(|e| CredentialsError {
            line: e.line,
            column: e.col,
            message: e.msg.into_owned(),
        })?;
        let mut profiles: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (section, props) in parsed.iter() {
            let Some(name) = section else { continue };
            let name = profile_name(name);
            let entry = profiles.entry(name.to_string()).or_default();
            for (k, v) in props.iter() {
                entry.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        Ok(Self { profiles })
    }

    /// The keys of profile `name`, if the file has it.
    pub fn profile(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.profiles.get(name)
    }

    /// Every profile, by name.
    pub fn profiles(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, String>)> {
        self.profiles.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// `[profile name]` (the config file's spelling) and `[name]` name the same profile.
fn profile_name(section: &str) -> &str {
    let name = section.trim();
    match name.strip_prefix("profile ") {
        Some(rest) => rest.trim(),
        None => name,
    }
}

/// One profile as credentials-file text, refusing what would not read back the same: a name
/// or key that is empty or has blanks around it, a control character, `[`, `]`, `=`, `:`, a
/// comment character or a backslash; a value with surrounding blanks, a control character or
/// a trailing backslash. [`CredentialsFile::parse`] gives back exactly these entries.
pub fn render_profile(name: &str, entries: &[(&str, &str)]) -> Result<String, String> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.trim() == s
            && !s
                .chars()
                .any(|c| c.is_control() || matches!(c, '[' | ']' | '=' | ':' | ';' | '#' | '\\'))
    };
    if !plain(name) || name.starts_with("profile ") {
        return Err(format!("profile name {name:?} cannot be written"));
    }
    let mut out = format!("[{name}]\n");
    for (key, value) in entries {
        if !plain(key) {
            return Err(format!("key {key:?} cannot be written"));
        }
        // A backslash before the line break would join the next line to the value.
        if value.trim() != *value || value.chars().any(char::is_control) || value.ends_with('\\') {
            return Err(format!("the value of {key} cannot be written"));
        }
        let _ = writeln!(out, "{key} = {value}");
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn profiles_read_as_the_aws_cli_reads_them() {
        let text = "# written by hand\n\
                    [default]\n\
                    aws_access_key_id = AKIDEFAULT\n\
                    aws_secret_access_key = s3cr3t/with+base64=\n\n\
                    [profile archway]\n\
                    aws_access_key_id=AKIARCH\n\
                    archway_api_token = tok\\en\"quoted\"\n";
        let file = CredentialsFile::parse(text).unwrap();
        let default = file.profile("default").unwrap();
        assert_eq!(default["aws_access_key_id"], "AKIDEFAULT");
        assert_eq!(default["aws_secret_access_key"], "s3cr3t/with+base64=");
        let archway = file.profile("archway").unwrap();
        assert_eq!(archway["aws_access_key_id"], "AKIARCH");
        // Literal: no escapes, no quote removal.
        assert_eq!(archway["archway_api_token"], "tok\\en\"quoted\"");
        assert!(file.profile("profile archway").is_none());
        // One prefix is taken off, as the aws cli does in its config file.
        let twice = CredentialsFile::parse("[profile profile x]\nk = v\n").unwrap();
        assert_eq!(twice.profile("profile x").unwrap()["k"], "v");
    }

    #[test]
    fn a_broken_file_is_refused_with_its_line() {
        let e =
            CredentialsFile::parse("[default]\naws_access_key_id = A\n[unclosed\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().starts_with("line 3"), "{e}");
    }

    #[test]
    fn a_rendered_profile_reads_back_the_same() {
        let entries = [
            ("aws_access_key_id", "AKIA0123"),
            ("aws_secret_access_key", "a/b+c=d"),
            ("archway_api_token", "aw_1234.5678"),
        ];
        let text = render_profile("archway", &entries).unwrap();
        let file = CredentialsFile::parse(&text).unwrap();
        let got: Vec<(&str, &str)> = file
            .profile("archway")
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut want = entries.to_vec();
        want.sort();
        assert_eq!(got, want);
        assert!(render_profile("a]b", &entries).is_err());
        assert!(render_profile("archway", &[("k", "line\nbreak")]).is_err());
        assert!(render_profile("archway", &[("k=v", "x")]).is_err());
    }
}
