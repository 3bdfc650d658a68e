//! What the server learns from a file's bytes: its real type (`infer`, from
//! the signature at its start) and, for the image formats the `image` crate
//! reads, the size after the EXIF orientation, a thumbnail, a BlurHash, and a
//! copy without metadata (EXIF location included) to serve. Decoding is
//! bounded: an image whose header asks for more pixels or memory than the
//! limits is refused before anything is allocated.

use std::io::BufReader;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// The longest side of a thumbnail.
pub const THUMBNAIL_SIDE: u32 = 320;
/// The longest side of an image the server decodes.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Bytes read from a file's start to sniff its type.
pub const SNIFF_BYTES: usize = 8192;

/// The type the bytes say, when they carry a signature `infer` knows.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    infer::get(head).map(|t| t.mime_type())
}

/// Image types served inline (shown in the page); everything else is served
/// as a download. SVG is never inline: it can carry script.
pub fn inline_image(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/jpeg" | "image/png" | "image/gif" | "image/webp"
    )
}

fn decodable(content_type: &str) -> Option<ImageFormat> {
    Some(match content_type {
        "image/jpeg" => ImageFormat::Jpeg,
        "image/png" => ImageFormat::Png,
        "image/gif" => ImageFormat::Gif,
        "image/webp" => ImageFormat::WebP,
        _ => return None,
    })
}

/// The type, as a `'static` name, when the server decodes it (JPEG, PNG,
/// GIF, WebP).
pub fn decodable_type(content_type: &str) -> Option<&'static str> {
    ["image/jpeg", "image/png", "image/gif", "image/webp"]
        .into_iter()
        .find(|t| *t == content_type)
}

/// What was derived from an image.
pub struct ImageFacts {
    pub width: u32,
    pub height: u32,
    pub blurhash: String,
    /// JPEG, or PNG for an image with transparency.
    pub thumbnail: Vec<u8>,
    /// The image re-encoded without its metadata, oriented; `None` when the
    /// upload is served as it came (GIF: no EXIF, and its animation kept).
    pub cleaned: Option<Vec<u8>>,
}

/// Why an image was refused, or could not be read now.
#[derive(Debug, thiserror::Error)]
pub enum ImageRefusal {
    #[error("the image is larger than the server decodes ({0})")]
    TooLarge(String),
    #[error("the bytes are not a readable {0}")]
    Unreadable(&'static str),
    /// The file could not be opened: not the upload's fault.
    #[error("reading the file: {0}")]
    Io(std::io::Error),
}

/// Reads an image of `content_type` (one [`decodable_type`] names) at `path`
/// if its pixels, twice over (the decoded image and a converted copy), fit in
/// `max_alloc` bytes. Blocking: run it on a blocking thread.
pub fn image_facts(
    path: &Path,
    content_type: &'static str,
    max_alloc: u64,
) -> Result<ImageFacts, ImageRefusal> {
    let format = decodable(content_type).ok_or(ImageRefusal::Unreadable(content_type))?;
    let refusal = |e: image::ImageError| match e {
        image::ImageError::Limits(l) => ImageRefusal::TooLarge(l.to_string()),
        _ => ImageRefusal::Unreadable(content_type),
    };
    let file = std::fs::File::open(path).map_err(ImageRefusal::Io)?;
    let mut reader = ImageReader::with_format(BufReader::new(file), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(refusal)?;
    // The decoded pixels, and a converted copy for an encoder: both must fit.
    // The decoders check the dimensions against the limits but not every one
    // reserves its output, so the budget is checked here, from the header,
    // before any pixel is decoded.
    let needed = decoder.total_bytes().saturating_mul(2);
    if needed > max_alloc {
        return Err(ImageRefusal::TooLarge(format!(
            "{} × {} pixels need {} MiB, over {} MiB",
            decoder.dimensions().0,
            decoder.dimensions().1,
            needed >> 20,
            max_alloc >> 20
        )));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(refusal)?;
    img.apply_orientation(orientation);
    let (width, height) = (img.width(), img.height());

    let small = img.thumbnail(32, 32).to_rgba8();
    let blurhash = blurhash::encode(4, 3, small.width(), small.height(), small.as_raw())
        .map_err(|_| ImageRefusal::Unreadable(content_type))?;

    let thumb = if width <= THUMBNAIL_SIDE && height <= THUMBNAIL_SIDE {
        img.clone()
    } else {
        img.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    };
    let alpha = img.color().has_alpha();
    let thumbnail = if alpha {
        encode(&thumb, ImageFormat::Png, content_type)?
    } else {
        jpeg(&thumb, 80, content_type)?
    };
    let cleaned = match format {
        ImageFormat::Gif => None,
        ImageFormat::Jpeg => Some(jpeg(&img, 90, content_type)?),
        other => Some(encode(&img, other, content_type)?),
    };
    Ok(ImageFacts {
        width,
        height,
        blurhash,
        thumbnail,
        cleaned,
    })
}

fn jpeg(
    img: &DynamicImage,
    quality: u8,
    content_type: &'static str,
) -> Result<Vec<u8>, ImageRefusal> {
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    let written = match img {
        // What a JPEG decodes to: encoded as it is, without a copy.
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageLuma8(_) => img.write_with_encoder(encoder),
        _ => DynamicImage::ImageRgb8(img.to_rgb8()).write_with_encoder(encoder),
    };
    written.map_err(|_| ImageRefusal::Unreadable(content_type))?;
    Ok(out)
}

fn encode(
    img: &DynamicImage,
    format: ImageFormat,
    content_type: &'static str,
) -> Result<Vec<u8>, ImageRefusal> {
    let mut out = std::io::Cursor::new(Vec::new());
    let img = match format {
        // The WebP encoder takes 8-bit RGB(A) only.
        ImageFormat::WebP => DynamicImage::ImageRgba8(img.to_rgba8()),
        _ => img.clone(),
    };
    img.write_to(&mut out, format)
        .map_err(|_| ImageRefusal::Unreadable(content_type))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn a_photo_gets_its_size_a_thumbnail_and_a_blurhash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, png(1000, 500)).unwrap();
        assert_eq!(sniff(&std::fs::read(&path).unwrap()), Some("image/png"));
        let facts = image_facts(&path, "image/png", 64 << 20).unwrap();
        assert_eq!((facts.width, facts.height), (1000, 500));
        let thumb = image::load_from_memory(&facts.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 160));
        assert_eq!(facts.blurhash.len(), 4 + 2 * 4 * 3, "{}", facts.blurhash);
    }

    #[test]
    fn an_image_beyond_the_decode_limit_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, png(2000, 2000)).unwrap();
        // 2000 × 2000 × 3 bytes is 12 MB: over a 4 MB budget.
        match image_facts(&path, "image/png", 4 << 20) {
            Err(ImageRefusal::TooLarge(_)) => {}
            other => panic!("{:?}", other.map(|f| f.width)),
        }
    }

    #[test]
    fn bytes_that_are_not_the_image_they_claim_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let mut bytes = png(50, 50);
        bytes.truncate(60);
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            image_facts(&path, "image/png", 64 << 20),
            Err(ImageRefusal::Unreadable("image/png"))
        ));
    }
}
