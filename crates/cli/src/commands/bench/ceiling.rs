//! The ceiling: what this machine does at all with no Kafka semantics. A bare TCP server in this process reads
//! frames (length, CRC-32C, body), checks each body's CRC-32C as a broker checks a record batch, and appends it to
//! a file; a loopback writer sends `records` 1 KiB records in 256 KiB frames. Produce figures are reported as a
//! fraction of this one, measured in the same run.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::figures::Figures;

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_FRAME: usize = 256;

pub fn run(records: usize) -> Result<Figures> {
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
    let frame = vec![b'x'; RECORD_BYTES * RECORDS_PER_FRAME];
    let progress = super::report::progress_bar(records as u64, "sent");
    let start = Instant::now();
    let mut sent = 0;
    while sent < records {
        let n = RECORDS_PER_FRAME.min(records - sent);
        let body = &frame[..n * RECORD_BYTES];
        stream.write_all(&(body.len() as u32).to_be_bytes())?;
        stream.write_all(&crc32c::crc32c(body).to_be_bytes())?;
        stream.write_all(body)?;
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
    let expected = (records * RECORD_BYTES) as u64;
    if appended != expected {
        bail!("ceiling server appended {appended} bytes, expected {expected}");
    }
    let mut figures = Figures::new(records, appended, elapsed);
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
