//! `archway reduce VOLUME/KEY --op OP …`: one reduction through the HTTP API (of a running
//! gateway with --gateway, or of the local data directory in process), printed as one JSON
//! object; `archway reduce VOLUME/PREFIX/ [--glob G]` reduces every matching object, with a
//! progress bar, and prints a table (JSON, CSV or NDJSON).

use anyhow::{Context, Result, bail};
use archway_compute::{
    BatchEvent, BatchFormat, BatchRequest, Engine, Op, ReduceRequest, Reduction,
};
use futures::StreamExt;
use http::Method;

use crate::catalog_cmd::{Target, connect};

#[derive(clap::Args, Debug)]
pub struct ReduceArgs {
    /// The object: VOLUME/KEY, e.g. demo/images/field1.fits. With --glob, or ending in `/`,
    /// VOLUME/PREFIX: every object under it (matching the glob) is reduced.
    pub object: String,
    /// Batch: reduce every object under the prefix whose rest matches this (`*`, `**`, `?`).
    #[arg(long)]
    pub glob: Option<String>,
    /// Batch output: json (an array), csv, or ndjson (events as they arrive).
    #[arg(long, default_value = "json", value_parser = ["json", "csv", "ndjson"])]
    pub format: String,
    /// count, sum, mean, min, max, var, std (population, as numpy), histogram, stats, median,
    /// quantiles.
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
    /// Quantiles for `--op quantiles`, comma-separated, e.g. 0.05,0.5,0.95.
    #[arg(long, value_delimiter = ',')]
    pub q: Vec<f64>,
    /// Quantiles from one pass within a stated error bound, instead of exactly.
    #[arg(long)]
    pub approximate: bool,
    /// Cutout section, one START:END per axis, axis 1 first: `--section 100:200,50:150` is
    /// numpy's data[50:150, 100:200].
    #[arg(long, value_parser = parse_section)]
    pub section: Option<Vec<[u64; 2]>>,
    /// Binning factors, one per axis, axis 1 first: `--factor 4,4`.
    #[arg(long, value_delimiter = ',')]
    pub factor: Vec<u64>,
    /// Encoding of array answers (cutout, bin): fits or npy.
    #[arg(long, default_value = "fits", value_parser = ["fits", "npy"])]
    pub output: String,
    /// Where an array answer is written (needed for cutout and bin).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto", value_parser = parse_engine)]
    pub engine: Engine,
    /// Where the data is at a site that cannot reduce it (a peer without a token, an older
    /// gateway), read it from there and reduce it at the last site that can. Off: refused.
    #[arg(long)]
    pub allow_pull: bool,
    #[command(flatten)]
    pub target: Target,
}

fn parse_op(s: &str) -> Result<Op, String> {
    Op::parse(s).ok_or_else(|| {
        format!(
            "unknown op `{s}`: use count, sum, mean, min, max, var, std, histogram, stats, \
             median or quantiles"
        )
    })
}

fn parse_engine(s: &str) -> Result<Engine, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase()))
        .map_err(|_| format!("unknown engine `{s}`: use auto, cpu or cuda"))
}

fn parse_section(s: &str) -> Result<Vec<[u64; 2]>, String> {
    s.split(',')
        .map(|part| {
            let (a, b) = part
                .split_once(':')
                .ok_or_else(|| format!("`{part}` is not START:END"))?;
            let n = |x: &str| {
                x.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("`{x}` in `{part}` is not a pixel index"))
            };
            Ok([n(a)?, n(b)?])
        })
        .collect()
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
    let (volume, key) = args
        .object
        .split_once('/')
        .unwrap_or((args.object.as_str(), ""));
    if volume.is_empty() {
        bail!("`{}`: name the object as VOLUME/KEY", args.object);
    }
    let req = ReduceRequest {
        volume: volume.to_string(),
        key: key.to_string(),
        op: args.op,
        hdu: args.hdu.clone(),
        column: args.column.clone(),
        bins: args.bins,
        range: args.range,
        q: (!args.q.is_empty()).then(|| args.q.clone()),
        approximate: args.approximate,
        section: args.section.clone(),
        factor: (!args.factor.is_empty()).then(|| args.factor.clone()),
        output: if args.output == "npy" {
            archway_compute::array::ArrayFormat::Npy
        } else {
            archway_compute::array::ArrayFormat::Fits
        },
        engine: args.engine,
        allow_pull: args.allow_pull,
    };
    if args.glob.is_some() || key.is_empty() || key.ends_with('/') {
        let batch_req = BatchRequest::over(req, args.glob.clone(), BatchFormat::Ndjson);
        return batch(&args, &batch_req).await;
    }
    let client = connect(&args.target).await?;
    if matches!(req.op, Op::Cutout | Op::Bin) {
        return array(&args, &client, &req).await;
    }
    let answer: Reduction = client
        .json(Method::POST, "/api/v1/reduce", Some(&req))
        .await
        .with_context(|| format!("reducing {}", args.object))?;
    println!("{}", serde_json::to_string(&answer)?);
    Ok(())
}

/// A cutout or binning: the array goes to `--out`, a JSON summary to stdout.
async fn array(
    args: &ReduceArgs,
    client: &archway_gateway::ApiClient,
    req: &ReduceRequest,
) -> Result<()> {
    let Some(path) = &args.out else {
        bail!(
            "--op {} answers an array: say where to write it with --out FILE",
            req.op.as_str()
        );
    };
    let (_, headers, mut body) = client
        .send_full(Method::POST, "/api/v1/reduce", Some(req))
        .await
        .with_context(|| format!("reducing {}", args.object))?;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk?);
    }
    std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let integer = |name: &str| header(name).parse::<u64>().ok();
    let shape: Vec<u64> = header("x-archway-shape")
        .split(',')
        .filter_map(|n| n.parse().ok())
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "op": req.op,
            "value": {"shape": shape, "format": args.output, "output": path},
            "count": integer("x-archway-count"),
            "missing": integer("x-archway-missing"),
            "hdu": integer("x-archway-hdu"),
            "engine": header("x-archway-engine"),
            "bytes_read": integer("x-archway-bytes-read"),
            "bytes_returned": bytes.len(),
            "elapsed_ms": header("x-archway-elapsed-ms").parse::<f64>().ok(),
        })
    );
    Ok(())
}

/// Every object under `prefix` (matching the glob), reduced by the gateway in parallel.
async fn batch(args: &ReduceArgs, req: &BatchRequest) -> Result<()> {
    let client = connect(&args.target).await?;
    let (_, mut body) = client
        .send(Method::POST, "/api/v1/reduce/batch", Some(req))
        .await
        .with_context(|| format!("reducing {}", args.object))?;
    let bar = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {pos} objects reduced ({msg}) {elapsed}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.set_message("0 failed");
    let mut rows = Vec::new();
    let mut pending = Vec::new();
    let mut summary = None;
    let mut failed = 0u64;
    if args.format == "csv" {
        print!("{}", archway_compute::batch::csv_header());
    }
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: BatchEvent = serde_json::from_slice(&line).with_context(|| {
                format!(
                    "unexpected line from the gateway: {}",
                    String::from_utf8_lossy(&line)
                )
            })?;
            match &event {
                BatchEvent::Result { .. } => bar.inc(1),
                BatchEvent::Error { .. } => {
                    failed += 1;
                    bar.inc(1);
                    bar.set_message(format!("{failed} failed"));
                }
                BatchEvent::Done { .. } | BatchEvent::Fatal { .. } => {}
            }
            match args.format.as_str() {
                "ndjson" => println!("{}", String::from_utf8_lossy(&line).trim_end()),
                "csv" => {
                    if let Some(row) = archway_compute::batch::csv_row(&event) {
                        std::io::Write::write_all(&mut std::io::stdout(), &row)?;
                    }
                }
                _ => {}
            }
            match event {
                BatchEvent::Done { .. } | BatchEvent::Fatal { .. } => summary = Some(event),
                other => rows.push(other),
            }
        }
    }
    bar.finish_and_clear();
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    match summary {
        Some(BatchEvent::Done {
            objects,
            failed,
            bytes_read,
            elapsed_ms,
        }) => {
            eprintln!(
                "{objects} objects reduced ({failed} failed), {bytes_read} bytes read at the source, {:.1} s",
                elapsed_ms / 1000.0
            );
            Ok(())
        }
        Some(BatchEvent::Fatal { message, .. }) => bail!("the batch stopped: {message}"),
        _ => bail!("the gateway ended the batch without a summary"),
    }
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
        assert_eq!(parse_op("median").unwrap(), Op::Median);
        assert!(parse_op("mode").unwrap_err().contains("unknown op"));
        assert_eq!(
            parse_section("10:20, 5:15").unwrap(),
            vec![[10, 20], [5, 15]]
        );
        assert!(parse_section("10-20").unwrap_err().contains("START:END"));
    }
}
