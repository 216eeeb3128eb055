//! The ceiling: what this machine does at all with no Kafka semantics. A bare TCP server in this process reads
//! frames (length, CRC-32C, body), checks each body's CRC-32C as a broker checks a record batch, and appends it to
//! a file; a loopback writer builds 256 KiB frames record by record (a length and a copy of each record, then the
//! frame's CRC-32C: the least any producer does) and sends them. Produce figures are reported as a fraction of
//! this one, measured in the same run with the same record size.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::figures::Figures;

/// Frame size: a large producer batch.
const FRAME_BYTES: usize = 256 * 1024;

pub fn run(records: usize, record_bytes: usize) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let path = dir.path().join("ceiling.log");
    let server = std::thread::spawn(move || -> Result<u64> {
        let (stream, _) = listener.accept()?;
        serve(stream, &path)
    });

    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let record = vec![b'x'; record_bytes];
    let per_frame = (FRAME_BYTES / (record_bytes + 4)).max(1);
    let mut frame = Vec::with_capacity(8 + per_frame * (record_bytes + 4));
    let mut expected = 0u64;
    let progress = super::report::progress_bar(records as u64, "sent");
    let start = Instant::now();
    let mut sent = 0;
    while sent < records {
        let n = per_frame.min(records - sent);
        frame.clear();
        frame.extend_from_slice(&[0; 8]);
        for _ in 0..n {
            frame.extend_from_slice(&(record_bytes as u32).to_be_bytes());
            frame.extend_from_slice(&record);
        }
        let body_len = frame.len() - 8;
        let crc = crc32c::crc32c(&frame[8..]);
        frame[..4].copy_from_slice(&(body_len as u32).to_be_bytes());
        frame[4..8].copy_from_slice(&crc.to_be_bytes());
        stream.write_all(&frame)?;
        expected += body_len as u64;
        sent += n;
        progress.set_position(sent as u64);
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    // The server answers with the bytes it appended once it has read everything: the end of the measurement.
    let mut appended = [0u8; 8];
    stream.read_exact(&mut appended)?;
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    let appended = u64::from_be_bytes(appended);
    server
        .join()
        .map_err(|_| anyhow::anyhow!("ceiling server panicked"))??;
    if appended != expected {
        bail!("ceiling server appended {appended} bytes, expected {expected}");
    }
    let mut figures = Figures::new(records, (records * record_bytes) as u64, elapsed);
    figures.note = Some("read + CRC-32C + append");
    Ok(figures)
}

fn serve(stream: TcpStream, path: &std::path::Path) -> Result<u64> {
    let mut file = std::fs::File::create(path).context("creating the ceiling's log file")?;
    let mut reader = BufReader::with_capacity(1 << 20, stream.try_clone()?);
    let mut frame = Vec::new();
    let mut appended = 0u64;
    loop {
        let mut len = [0u8; 4];
        match reader.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > 16 << 20 {
            bail!("frame of {len} bytes");
        }
        let mut crc = [0u8; 4];
        reader.read_exact(&mut crc)?;
        frame.resize(len, 0);
        reader.read_exact(&mut frame)?;
        if crc32c::crc32c(&frame) != u32::from_be_bytes(crc) {
            bail!("ceiling frame failed its CRC-32C check");
        }
        file.write_all(&frame)?;
        appended += len as u64;
    }
    (&stream).write_all(&appended.to_be_bytes())?;
    Ok(appended)
}
