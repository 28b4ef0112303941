//! Weight matrices written in pieces (as the browser streams them): every byte lands where
//! it belongs whatever the piece sizes and buffer splits, and a wrong byte count is an
//! error that names the matrix.

use wisp_core::gpu::QMatrix;
use wisp_core::quant::GgmlType;
use wisp_tests::gpu::gpu_with_binding_limit;

/// The bytes the GPU holds for `m`, buffer after buffer.
fn read_back(gpu: &wisp_core::gpu::Gpu, m: &QMatrix) -> Vec<u8> {
    let mut out = Vec::new();
    for c in &m.chunks {
        let len = c.n_rows as u64 * m.row_bytes as u64;
        out.extend(pollster::block_on(gpu.read_buffer(&c.buffer, 0, len)).expect("read back"));
    }
    out
}

#[test]
fn pieces_of_any_size_land_in_order_across_buffer_splits() {
    // Q8_0 rows of 96 elements are 102 bytes (2 over a word): buffers of 1 KiB hold an
    // even number of rows, and pieces of 1, 3, 5, 7 and 1000 bytes leave 1 to 3 bytes over.
    let gpu = gpu_with_binding_limit(1024);
    let rows = 37u64;
    let bytes: Vec<u8> = (0..rows * 102).map(|i| (i * 7 + i / 255) as u8).collect();
    for piece in [1usize, 3, 5, 7, 1000, bytes.len()] {
        let m = pollster::block_on(QMatrix::allocate(&gpu, "w", GgmlType::Q8_0, 96, rows))
            .expect("allocate");
        assert!(m.chunks.len() >= 4, "{} buffers", m.chunks.len());
        assert!(
            m.chunks
                .iter()
                .all(|c| (c.n_rows as u64 * 102).is_multiple_of(4)
                    || c.first_row as u64 + c.n_rows as u64 == rows)
        );
        let mut writer = m.writer();
        for part in bytes.chunks(piece) {
            writer.push(&gpu, part).expect("push");
        }
        writer.finish(&gpu).expect("finish");
        assert_eq!(read_back(&gpu, &m), bytes, "pieces of {piece} bytes");
    }
}

#[test]
fn a_wrong_byte_count_is_refused() {
    let gpu = gpu_with_binding_limit(1024);
    let m = pollster::block_on(QMatrix::allocate(
        &gpu,
        "blk.0.ffn_up.weight",
        GgmlType::Q8_0,
        96,
        4,
    ))
    .expect("allocate");
    let mut writer = m.writer();
    let e = writer.push(&gpu, &[0u8; 409]).unwrap_err().to_string();
    assert!(
        e.contains("blk.0.ffn_up.weight") && e.contains("409 bytes for a matrix of 408"),
        "{e}"
    );
    let mut writer = m.writer();
    writer.push(&gpu, &[0u8; 400]).expect("push");
    let e = writer.finish(&gpu).unwrap_err().to_string();
    assert!(
        e.contains("blk.0.ffn_up.weight") && e.contains("400 bytes for a matrix of 408"),
        "{e}"
    );
}
