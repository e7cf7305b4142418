//! Unit tests of the framing: exact bytes, round trips, and every malformed input.

use std::io::{self, Cursor, Write};

use super::*;

fn run(format: Format, commands: &str) -> Request {
    Request::Run {
        format,
        commands: commands.to_owned(),
    }
}

fn request_bytes(request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    write_request(&mut out, request).unwrap();
    out
}

fn response_bytes(response: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    write_response(&mut out, response).unwrap();
    out
}

#[test]
fn frames_have_the_documented_bytes() {
    assert_eq!(request_bytes(&Request::Ping), [0x01, 0, 0, 0, 0]);
    assert_eq!(
        request_bytes(&run(Format::Script, "list tables")),
        b"\x02\x00\x00\x00\x0blist tables"
    );
    assert_eq!(
        request_bytes(&run(Format::Json, "{}")),
        b"\x82\x00\x00\x00\x02{}"
    );
    assert_eq!(
        response_bytes(&Response::Ok("ok".into())),
        b"\x00\x00\x00\x00\x02ok"
    );
    assert_eq!(
        response_bytes(&Response::Err("no".into())),
        b"\x01\x00\x00\x00\x02no"
    );
}

#[test]
fn requests_round_trip_back_to_back_then_end_cleanly() {
    let requests = [
        Request::Ping,
        run(Format::Script, "add table ip t\n"),
        run(Format::Json, r#"{"nftables": []}"#),
        run(Format::Json, ""),
        run(Format::Script, "comment \"é ü ✓\""),
    ];
    let mut stream = Vec::new();
    for r in &requests {
        write_request(&mut stream, r).unwrap();
    }
    let mut reader = Cursor::new(stream);
    for r in &requests {
        assert_eq!(read_request(&mut reader).unwrap().as_ref(), Some(r));
    }
    assert_eq!(read_request(&mut reader).unwrap(), None);
    assert_eq!(read_request(&mut reader).unwrap(), None, "EOF stays EOF");
}

#[test]
fn responses_round_trip_back_to_back() {
    let responses = [
        Response::Ok(String::new()),
        Response::Ok(r#"{"nftables": [{"metainfo": {}}]}"#.into()),
        Response::Err("Error: No such file or directory\n".into()),
    ];
    let mut stream = Vec::new();
    for r in &responses {
        write_response(&mut stream, r).unwrap();
    }
    let mut reader = Cursor::new(stream);
    for r in &responses {
        assert_eq!(&read_response(&mut reader).unwrap(), r);
    }
    assert!(matches!(read_response(&mut reader), Err(WireError::Closed)));
}

#[test]
fn a_large_payload_arrives_whole() {
    let commands = "add element ip t s { 198.18.0.1 }\n".repeat(100_000);
    let bytes = request_bytes(&run(Format::Script, &commands));
    assert_eq!(bytes.len(), HEADER_LEN + commands.len());
    let back = read_request(&mut Cursor::new(bytes)).unwrap();
    assert_eq!(back, Some(run(Format::Script, &commands)));
}

#[test]
fn a_truncated_header_is_an_error_not_eof() {
    for cut in 1..HEADER_LEN {
        let bytes = &request_bytes(&run(Format::Json, "{}"))[..cut];
        match read_request(&mut Cursor::new(bytes)) {
            Err(WireError::Truncated { expected: 5, got }) => assert_eq!(got, cut as u64),
            other => panic!("cut at {cut}: {other:?}"),
        }
        match read_response(&mut Cursor::new(bytes)) {
            Err(WireError::Truncated { expected: 5, got }) => assert_eq!(got, cut as u64),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn a_truncated_payload_is_an_error() {
    let bytes = request_bytes(&run(Format::Script, "list tables"));
    let cut = &bytes[..bytes.len() - 3];
    match read_request(&mut Cursor::new(cut)) {
        Err(WireError::Truncated { expected, got }) => {
            assert_eq!((expected, got), (16, 13));
        }
        other => panic!("{other:?}"),
    }
    let bytes = response_bytes(&Response::Ok("listing".into()));
    assert!(matches!(
        read_response(&mut Cursor::new(&bytes[..HEADER_LEN + 2])),
        Err(WireError::Truncated {
            expected: 12,
            got: 7
        })
    ));
}

#[test]
fn an_announced_length_over_the_limit_is_refused_before_reading_it() {
    let over = MAX_FRAME_LEN + 1;
    let mut bytes = vec![0x82];
    bytes.extend_from_slice(&over.to_be_bytes());
    bytes.extend_from_slice(b"{}");
    match read_request(&mut Cursor::new(&bytes)) {
        Err(WireError::TooLarge { len }) => assert_eq!(len, u64::from(over)),
        other => panic!("{other:?}"),
    }
    let mut bytes = vec![0x00];
    bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        read_response(&mut Cursor::new(&bytes)),
        Err(WireError::TooLarge { len }) if len == u64::from(u32::MAX)
    ));
}

#[test]
fn a_length_at_the_limit_with_few_bytes_is_truncated_quickly() {
    let mut bytes = vec![0x02];
    bytes.extend_from_slice(&MAX_FRAME_LEN.to_be_bytes());
    bytes.extend_from_slice(b"list");
    assert!(matches!(
        read_request(&mut Cursor::new(&bytes)),
        Err(WireError::Truncated { got: 9, .. })
    ));
}

#[test]
fn unknown_kinds_and_statuses_are_refused() {
    for kind in [0x00, 0x03, 0x81, 0xff] {
        let bytes = [kind, 0, 0, 0, 0];
        match read_request(&mut Cursor::new(bytes)) {
            Err(WireError::UnknownKind(k)) => assert_eq!(k, kind),
            other => panic!("kind {kind:#x}: {other:?}"),
        }
    }
    for status in [0x02, 0x80] {
        match read_response(&mut Cursor::new([status, 0, 0, 0, 0])) {
            Err(WireError::UnknownStatus(s)) => assert_eq!(s, status),
            other => panic!("status {status:#x}: {other:?}"),
        }
    }
}

#[test]
fn a_ping_with_a_payload_is_refused() {
    let bytes = [0x01, 0, 0, 0, 2, b'h', b'i'];
    assert!(matches!(
        read_request(&mut Cursor::new(bytes)),
        Err(WireError::PingPayload { len: 2 })
    ));
}

#[test]
fn a_payload_that_is_not_utf8_is_refused() {
    let bytes = [0x02, 0, 0, 0, 2, 0xc3, 0x28];
    assert!(matches!(
        read_request(&mut Cursor::new(bytes)),
        Err(WireError::NotUtf8)
    ));
    let bytes = [0x01, 0, 0, 0, 1, 0xff];
    assert!(matches!(
        read_response(&mut Cursor::new(bytes)),
        Err(WireError::NotUtf8)
    ));
}

/// A pipe whose reader is gone.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_write_to_a_closed_pipe_is_a_write_error() {
    match write_request(&mut Broken, &Request::Ping) {
        Err(WireError::Write(e)) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        write_response(&mut Broken, &Response::Ok(String::new())),
        Err(WireError::Write(_))
    ));
}

/// A writer that counts flushes.
#[derive(Default)]
struct Flushes {
    bytes: Vec<u8>,
    flushes: usize,
}

impl Write for Flushes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flushes += 1;
        Ok(())
    }
}

#[test]
fn every_frame_is_flushed_so_the_peer_never_waits_on_a_buffer() {
    let mut w = Flushes::default();
    write_request(&mut w, &Request::Ping).unwrap();
    write_response(&mut w, &Response::Ok("x".into())).unwrap();
    assert_eq!(w.flushes, 2);
    assert_eq!(w.bytes.len(), 2 * HEADER_LEN + 1);
}

#[test]
fn errors_say_what_failed() {
    let text = WireError::Truncated {
        expected: 16,
        got: 13,
    }
    .to_string();
    assert!(text.contains("13 of 16"), "{text}");
    assert!(WireError::UnknownKind(0xab).to_string().contains("0xab"));
    let io = WireError::Read(io::Error::other("boom"));
    assert!(std::error::Error::source(&io).is_some());
}

/// The bytes of a streamed `Run` whose commands are written by `pieces`, one `write_str` each.
fn streamed_bytes(format: Format, pieces: &[&str]) -> Vec<u8> {
    let mut buf = Vec::new();
    write_run_with(&mut buf, format, |out| {
        pieces.iter().try_for_each(|piece| out.write_str(piece))
    })
    .unwrap();
    buf
}

#[test]
fn a_streamed_run_reads_back_as_the_same_request_whatever_its_pieces() {
    // 3 MB of script in pieces of every size, some crossing chunk boundaries, with
    // multi-byte characters that a chunk boundary may cut in two.
    let line = "add element ip nftproxy m { 10.0.0.1 : goto s-é }\n";
    let text = line.repeat(3_000_000 / line.len());
    let mut pieces = Vec::new();
    let mut rest = text.as_str();
    let mut size = 1;
    while !rest.is_empty() {
        let mut cut = size.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, later) = rest.split_at(cut);
        pieces.push(piece);
        rest = later;
        size = (size * 7 + 1) % 100_003;
    }
    for format in [Format::Script, Format::Json] {
        let bytes = streamed_bytes(format, &pieces);
        assert_eq!(bytes[0], 0x40 | request_bytes(&run(format, ""))[0]);
        assert_eq!(
            &bytes[1..5],
            &[0, 0, 0, 0],
            "the header announces no length"
        );
        let mut reader = &bytes[..];
        let request = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(request, run(format, &text));
        assert!(
            read_request(&mut reader).unwrap().is_none(),
            "nothing left over"
        );
    }
}

#[test]
fn a_streamed_run_goes_out_in_chunks_not_in_one_piece() {
    let text = "x".repeat(CHUNK_LEN * 2 + 10);
    let bytes = streamed_bytes(Format::Script, &[&text]);
    let mut at = HEADER_LEN;
    let mut chunks = Vec::new();
    loop {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 4 + len;
        if len == 0 {
            break;
        }
        chunks.push(len);
    }
    assert_eq!(chunks, [CHUNK_LEN, CHUNK_LEN, 10]);
    assert_eq!(at, bytes.len());
}

#[test]
fn an_empty_streamed_run_is_an_empty_request() {
    let bytes = streamed_bytes(Format::Script, &[]);
    assert_eq!(bytes.len(), HEADER_LEN + 4);
    let request = read_request(&mut &bytes[..]).unwrap().unwrap();
    assert_eq!(request, run(Format::Script, ""));
}

#[test]
fn a_streamed_run_cut_short_is_truncated_never_shorter() {
    let text = "y".repeat(CHUNK_LEN + 100);
    let bytes = streamed_bytes(Format::Script, &[&text]);
    // Without the end marker, inside a chunk's length, inside a chunk.
    for cut in [bytes.len() - 4, HEADER_LEN + 2, HEADER_LEN + 4 + 1000] {
        let error = read_request(&mut &bytes[..cut]).unwrap_err();
        assert!(
            matches!(error, WireError::Truncated { .. }),
            "{cut}: {error}"
        );
    }
    // A renderer that fails midway sends no end marker: the reader sees a truncated frame.
    let mut buf = Vec::new();
    let error = write_run_with(&mut buf, Format::Script, |out| {
        out.write_str(&text)?;
        Err(std::fmt::Error)
    })
    .unwrap_err();
    assert!(matches!(error, WireError::Write(_)), "{error}");
    let error = read_request(&mut &buf[..]).unwrap_err();
    assert!(matches!(error, WireError::Truncated { .. }), "{error}");
}

#[test]
fn streamed_frames_that_break_the_rules_are_refused() {
    // A streamed header with a length, and a streamed ping.
    let mut with_length = streamed_bytes(Format::Script, &["abc"]);
    with_length[4] = 3;
    assert!(matches!(
        read_request(&mut &with_length[..]),
        Err(WireError::StreamedLength { len: 3 })
    ));
    let ping = [0x41, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(matches!(
        read_request(&mut &ping[..]),
        Err(WireError::UnknownKind(0x41))
    ));
    // A chunk that takes the payload over the limit is refused before it is read.
    let mut over = vec![0x42, 0, 0, 0, 0];
    over.extend_from_slice(&3u32.to_be_bytes());
    over.extend_from_slice(b"abc");
    over.extend_from_slice(&(MAX_FRAME_LEN - 2).to_be_bytes());
    assert!(matches!(
        read_request(&mut &over[..]),
        Err(WireError::TooLarge { len }) if len == u64::from(MAX_FRAME_LEN) + 1
    ));
    // Not UTF-8 once put together.
    let mut bad = vec![0x42, 0, 0, 0, 0];
    bad.extend_from_slice(&2u32.to_be_bytes());
    bad.extend_from_slice(&[0xff, 0xfe]);
    bad.extend_from_slice(&0u32.to_be_bytes());
    assert!(matches!(
        read_request(&mut &bad[..]),
        Err(WireError::NotUtf8)
    ));
}
