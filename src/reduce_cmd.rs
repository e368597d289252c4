//! `archway reduce VOLUME/KEY --op OP …`: one reduction through the HTTP API (of a running
//! gateway with --gateway, or of the local data directory in process), printed as one JSON
//! object.

use anyhow::{Context, Result, bail};
use archway_compute::{Engine, Op, ReduceRequest, Reduction};
use http::Method;

use crate::catalog_cmd::{Target, connect};

#[derive(clap::Args, Debug)]
pub struct ReduceArgs {
    /// The object: VOLUME/KEY, e.g. demo/images/field1.fits.
    pub object: String,
    /// count, sum, mean, min, max, var, std (population, as numpy), histogram, stats.
    #[arg(long, value_parser = parse_op)]
    pub op: Op,
    /// HDU index (0 is the primary) or EXTNAME; default: the first HDU with data.
    #[arg(long)]
    pub hdu: Option<String>,
    /// Table column (binary tables).
    #[arg(long)]
    pub column: Option<String>,
    /// Histogram bins (default 10).
    #[arg(long)]
    pub bins: Option<usize>,
    /// Histogram range LO,HI (default: the data's minimum and maximum).
    #[arg(long, value_parser = parse_range, allow_hyphen_values = true)]
    pub range: Option<[f64; 2]>,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto", value_parser = parse_engine)]
    pub engine: Engine,
    #[command(flatten)]
    pub target: Target,
}

fn parse_op(s: &str) -> Result<Op, String> {
    Op::parse(s).ok_or_else(|| {
        format!("unknown op `{s}`: use count, sum, mean, min, max, var, std, histogram or stats")
    })
}

fn parse_engine(s: &str) -> Result<Engine, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
        .map_err(|_| format!("unknown engine `{s}`: use auto, cpu or cuda"))
}

fn parse_range(s: &str) -> Result<[f64; 2], String> {
    let bad = || format!("`{s}` is not a range LO,HI (e.g. 0,100)");
    let (lo, hi) = s.split_once(',').ok_or_else(bad)?;
    Ok([
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    ])
}

pub async fn run(args: ReduceArgs) -> Result<()> {
    let Some((volume, key)) = args.object.split_once('/') else {
        bail!("`{}`: name the object as VOLUME/KEY", args.object);
    };
    if volume.is_empty() || key.is_empty() {
        bail!("`{}`: name the object as VOLUME/KEY", args.object);
    }
    let req = ReduceRequest {
        volume: volume.to_string(),
        key: key.to_string(),
        op: args.op,
        hdu: args.hdu,
        column: args.column,
        bins: args.bins,
        range: args.range,
        engine: args.engine,
    };
    let client = connect(&args.target).await?;
    let answer: Reduction = client
        .json(Method::POST, "/api/v1/reduce", Some(&req))
        .await
        .with_context(|| format!("reducing {}", args.object))?;
    println!("{}", serde_json::to_string(&answer)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn arguments_parse_or_say_why_not() {
        assert_eq!(parse_range("-1.5, 2").unwrap(), [-1.5, 2.0]);
        assert!(parse_range("1").unwrap_err().contains("LO,HI"));
        assert_eq!(parse_engine("CUDA").unwrap(), Engine::Cuda);
        assert!(parse_engine("tpu").is_err());
        assert!(parse_op("median").unwrap_err().contains("unknown op"));
    }
}
