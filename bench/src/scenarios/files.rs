//! Files: `files_uploads` uploads of `files_bytes` each at once, through the
//! server (tus `PATCH`), first of bytes that are no image (the server streams
//! them to disk and sniffs them), then of JPEG photos (the server also decodes
//! each, `--image-decodes` at a time, for its thumbnail and BlurHash, and
//! re-encodes it without metadata). Measured: the throughput from the first
//! request to the last answer, and the server's resident memory sampled every
//! 10 ms, its peak above what it held idle just before.
//!
//! The photos are made here (no real photo ships with the repository): a
//! smooth scene with fine noise, the texture that makes camera JPEGs large,
//! encoded at quality 90 to about the asked size.

use std::io::Cursor;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use image::{DynamicImage, RgbImage};
use serde_json::json;

use crate::procstat::rss_kib;
use crate::results::Files;
use crate::servers::Process;

use super::Ctx;

const UPLOADER: &str = "uploader";
/// The server's image decode settings in this run (its defaults).
const DECODES: u32 = 2;
const DECODE_MIB: u64 = 512;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Files>> {
    let size = ctx.sizes.files_bytes;
    let noise: Bytes = (0..size)
        .scan(0x2545_f491_4f6c_dd1d_u64, |x, _| {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            Some(*x as u8)
        })
        .collect::<Vec<u8>>()
        .into();
    let (photo, width, height) = tokio::task::spawn_blocking(move || photo(size)).await??;
    let largest = noise.len().max(photo.len());
    let runs = [
        (
            "non-image files".to_owned(),
            noise,
            "application/octet-stream",
        ),
        (
            format!("JPEG photos, {width} × {height}"),
            Bytes::from(photo),
            "image/jpeg",
        ),
    ];
    let app = ctx.mkondo.create_app().await?;
    let server = ctx
        .mkondo
        .start_as(
            super::any_port(),
            None,
            &[
                "--image-decodes",
                &DECODES.to_string(),
                "--image-max-alloc-mib",
                &DECODE_MIB.to_string(),
                "--file-max-bytes",
                &largest.to_string(),
                // Both runs by one uploader: past the default daily quota.
                "--file-user-daily-bytes",
                &(1u64 << 40).to_string(),
            ],
        )
        .await?;
    let result = measure(ctx, &server, &app, runs).await;
    server.stop().await?;
    result
}

async fn measure(
    ctx: &Ctx,
    server: &Process,
    app: &crate::token::App,
    runs: [(String, Bytes, &str); 2],
) -> anyhow::Result<Vec<Files>> {
    let rest = ctx.mkondo.rest(server.addr, app);
    rest.post("/users", json!({"id": UPLOADER})).await?;
    let conversation = rest
        .conversation(json!({"kind": "group", "name": "files", "members": [UPLOADER]}))
        .await?;
    let mut measured = Vec::new();
    for (label, body, content_type) in runs {
        measured.push(
            upload_all(
                ctx,
                server,
                &rest,
                &conversation,
                &label,
                body,
                content_type,
            )
            .await?,
        );
    }
    Ok(measured)
}

/// `files_uploads` uploads of `body` at once.
async fn upload_all(
    ctx: &Ctx,
    server: &Process,
    rest: &crate::servers::Rest,
    conversation: &str,
    label: &str,
    body: Bytes,
    content_type: &str,
) -> anyhow::Result<Files> {
    // Settled: what the server holds idle before the run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(server.pid);
    let n = ctx.sizes.files_uploads;
    let mut grants = Vec::with_capacity(n);
    for i in 0..n {
        let up = rest
            .post(
                &format!("/conversations/{conversation}/uploads"),
                json!({"name": format!("f{i}"), "size": body.len(), "content_type": content_type,
                       "user_id": UPLOADER}),
            )
            .await?;
        grants.push(format!(
            "http://{}{}",
            server.addr,
            up["url"].as_str().unwrap_or_default()
        ));
    }
    let pid = server.pid;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak
        })
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .build()?;
    let started = Instant::now();
    let answers = join_all(grants.iter().map(|url| {
        let http = http.clone();
        let body = body.clone();
        async move {
            let resp = http
                .patch(url)
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", "0")
                .header("content-type", "application/offset+octet-stream")
                .body(body)
                .send()
                .await;
            match resp {
                Ok(r) if r.status().as_u16() == 204 => Ok(()),
                Ok(r) => Err(format!(
                    "{} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )),
                Err(e) => Err(e.to_string()),
            }
        }
    }))
    .await;
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await?;
    let failed: Vec<String> = answers.into_iter().filter_map(Result::err).collect();
    let total_mib = (body.len() * n) as f64 / (1024.0 * 1024.0);
    Ok(Files {
        run: label.to_owned(),
        uploads: n,
        bytes_each: body.len(),
        secs,
        mib_per_sec: total_mib / secs,
        idle_rss_mib: idle as f64 / 1024.0,
        peak_above_idle_mib: peak.saturating_sub(idle) as f64 / 1024.0,
        image_decodes: (content_type == "image/jpeg").then_some((DECODES, DECODE_MIB)),
        failed: failed.len(),
        first_error: failed.into_iter().next(),
    })
}

/// A photo-like JPEG of about `bytes`: a smooth scene (sky, ground, a sun)
/// with per-pixel noise, at quality 90. Its side grows until it is as large.
fn photo(bytes: usize) -> anyhow::Result<(Vec<u8>, u32, u32)> {
    let mut width = 256u32;
    loop {
        let height = width * 3 / 4;
        let mut seed = 0x9e37_79b9_u32;
        let img = RgbImage::from_fn(width, height, |x, y| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let n = (seed % 48) as i32 - 24;
            let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
            let sun = ((fx - 0.7).powi(2) + (fy - 0.25).powi(2)).sqrt() < 0.08;
            let base = if sun {
                [250, 230, 120]
            } else if fy < 0.55 {
                [(90.0 + 80.0 * fy) as i32, (140.0 + 60.0 * fy) as i32, 220]
            } else {
                [(70.0 + 60.0 * fx) as i32, (120.0 - 40.0 * fy) as i32, 60]
            };
            image::Rgb(base.map(|c: i32| (c + n).clamp(0, 255) as u8))
        });
        let mut out = Cursor::new(Vec::new());
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
        DynamicImage::ImageRgb8(img).write_with_encoder(encoder)?;
        let jpeg = out.into_inner();
        if jpeg.len() >= bytes || width >= 8000 {
            return Ok((jpeg, width, height));
        }
        width =
            (width as f64 * ((bytes as f64 / jpeg.len() as f64).sqrt()).clamp(1.05, 2.0)) as u32;
    }
}
