//! The window's pixels, as the GPU rendered them, into a PNG file.

use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result};
use eframe::egui::ColorImage;

/// Writes `image` (RGBA, unpremultiplied sRGB) to `path` as an 8-bit RGBA PNG.
pub fn save_png(image: &ColorImage, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let [width, height] = image.size;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .with_context(|| format!("writing {}", path.display()))?;
    let rgba: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(|p| p.to_srgba_unmultiplied())
        .collect();
    writer
        .write_image_data(&rgba)
        .with_context(|| format!("writing {}", path.display()))?;
    writer
        .finish()
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use eframe::egui::Color32;

    #[test]
    fn a_png_holds_the_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shots/a.png");
        let mut image = ColorImage::filled([3, 2], Color32::from_rgb(10, 20, 30));
        image.pixels[4] = Color32::from_rgb(200, 100, 50);
        save_png(&image, &path).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(&buf[0..4], &[10, 20, 30, 255]);
        assert_eq!(&buf[16..20], &[200, 100, 50, 255]);
    }
}
