//! The `config` fuzz target's check, shared with `tests/fuzz_replay.rs`: any text as
//! `archway.toml`, and after a line `#ENV` any `NAME=value` lines as `ARCHWAY_NAME=value`
//! overrides. A refusal must name at least one problem; an accepted configuration must give
//! the dataplane its share. Err (or a panic) is a bug.

pub fn exercise(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let (toml, env) = text.split_once("\n#ENV\n").unwrap_or((text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("ARCHWAY_{k}"), v.to_string()))
        .collect();
    match archway_config::Config::parse(toml, env) {
        Ok(config) => {
            let _ = config.dataplane();
            let _ = config.server.listen_addr();
            Ok(())
        }
        Err(problems) if problems.is_empty() => Err("refused without a problem".into()),
        Err(_) => Ok(()),
    }
}
