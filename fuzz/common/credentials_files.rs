//! The `credentials_files` fuzz target's check, shared with `tests/fuzz_replay.rs`. The first
//! byte picks the file; the rest is its text:
//! - even: an AWS shared credentials file as `archway mount` reads it. A refusal names its
//!   line; an accepted file's profiles and keys are trimmed, and any profile the writer
//!   (`render_profile`, which `archway serve` writes the admin's file with) agrees to write
//!   reads back exactly the same.
//! - odd: the catalogue's secret key file. Accepted only as 64 hexadecimal digits, the key
//!   then seals and opens; a refusal says nothing of what the file holds (its words are those
//!   a file of as many `x` gets).
//!
//! Err (or a panic) is a bug.

use archway_catalog::secret::SecretBox;
use archway_config::credentials::{CredentialsFile, render_profile};

pub fn exercise(data: &[u8]) -> Result<(), String> {
    let Some((&pick, rest)) = data.split_first() else {
        return Ok(());
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return Ok(());
    };
    if pick % 2 == 0 {
        aws_credentials(text)
    } else {
        catalogue_key(text)
    }
}

fn aws_credentials(text: &str) -> Result<(), String> {
    let file = match CredentialsFile::parse(text) {
        Ok(file) => file,
        Err(e) if e.line == 0 || e.message.is_empty() => {
            return Err(format!("a refusal without a line or a reason: {e:?}"));
        }
        Err(_) => return Ok(()),
    };
    for (name, entries) in file.profiles() {
        // `[profile profile x]` names the profile `profile x`: one prefix is taken off.
        if name.trim() != name {
            return Err(format!("profile name {name:?} kept its blanks"));
        }
        if let Some((k, v)) = entries
            .iter()
            .find(|(k, v)| k.trim() != *k || v.trim() != *v)
        {
            return Err(format!("{name}: {k:?} = {v:?} kept its blanks"));
        }
        let pairs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let Ok(written) = render_profile(name, &pairs) else {
            continue;
        };
        let back = CredentialsFile::parse(&written)
            .map_err(|e| format!("{name}: the writer's own text is refused: {e}\n{written}"))?;
        if back.profile(name) != Some(entries) || back.profiles().count() != 1 {
            return Err(format!(
                "{name}: {entries:?} was written as\n{written}and read back as {back:?}"
            ));
        }
    }
    Ok(())
}

fn catalogue_key(text: &str) -> Result<(), String> {
    match SecretBox::from_key_text(text) {
        Ok(key) => {
            let digits = text.trim();
            if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "accepted a key that is not 64 hex digits: {text:?}"
                ));
            }
            let sealed = key
                .seal("AKIDFUZZ", b"secret")
                .map_err(|e| format!("sealing with an accepted key: {e}"))?;
            match key.open("AKIDFUZZ", &sealed) {
                Ok(plain) if plain == b"secret" => Ok(()),
                other => Err(format!("a sealed secret did not open: {other:?}")),
            }
        }
        Err(message) => {
            // The refusal depends on the file's length only, never on what it holds: a file of
            // as many `x` gets the same words.
            let same_length = "x".repeat(text.trim().chars().count());
            match SecretBox::from_key_text(&same_length) {
                Err(other) if other == message => Ok(()),
                other => Err(format!(
                    "the refusal depends on what the file holds: {message:?} (a file of as \
                     many `x`: {other:?})"
                )),
            }
        }
    }
}
