//! A lean WebSocket client (RFC 6455): the upgrade request, server-frame parsing
//! and masked client frames. Just what an Engine.IO v4 client needs, with no
//! per-connection state beyond a read buffer.

/// Opcodes this client cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
    Other(u8),
}

impl Opcode {
    fn from_bits(bits: u8) -> Self {
        match bits {
            0 => Self::Continuation,
            1 => Self::Text,
            2 => Self::Binary,
            8 => Self::Close,
            9 => Self::Ping,
            10 => Self::Pong,
            other => Self::Other(other),
        }
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0,
            Self::Text => 1,
            Self::Binary => 2,
            Self::Close => 8,
            Self::Ping => 9,
            Self::Pong => 10,
            Self::Other(bits) => bits,
        }
    }
}

/// A frame header parsed from the front of a buffer; the payload is
/// `buf[header_len .. header_len + payload_len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) fin: bool,
    pub(crate) opcode: Opcode,
    pub(crate) header_len: usize,
    pub(crate) payload_len: usize,
    /// Servers must not mask; a masked frame is still handled.
    pub(crate) mask: Option<[u8; 4]>,
}

impl Frame {
    pub(crate) fn total_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses a frame header; `Ok(None)` when more bytes are needed.
pub(crate) fn parse_frame(buf: &[u8], max_payload: usize) -> Result<Option<Frame>, &'static str> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = Opcode::from_bits(buf[0] & 0x0f);
    let masked = buf[1] & 0x80 != 0;
    let (payload_len, mut header_len) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut len = [0u8; 8];
            len.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(len);
            (usize::try_from(len).map_err(|_| "frame too large")?, 10)
        }
        len => (usize::from(len), 2),
    };
    if payload_len > max_payload {
        return Err("frame larger than the payload limit");
    }
    let mask = if masked {
        if buf.len() < header_len + 4 {
            return Ok(None);
        }
        let mut key = [0u8; 4];
        key.copy_from_slice(&buf[header_len..header_len + 4]);
        header_len += 4;
        Some(key)
    } else {
        None
    };
    Ok(Some(Frame {
        fin,
        opcode,
        header_len,
        payload_len,
        mask,
    }))
}

/// XORs `data` with a WebSocket mask key (in place).
pub(crate) fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

/// Appends a masked client frame (FIN set) with `payload` to `out`.
pub(crate) fn encode_client_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8], key: [u8; 4]) {
    out.push(0x80 | opcode.bits());
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key);
}

/// The HTTP/1.1 upgrade request for Engine.IO v4 over WebSocket.
pub(crate) fn upgrade_request(host: &str) -> String {
    format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Looks for the end of the upgrade response in `buf`: `Ok(Some(len))` with the
/// length of the head when it is a `101`, `Ok(None)` when incomplete.
pub(crate) fn parse_upgrade_response(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = &buf[..end];
    let status_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    if status_line.starts_with(b"HTTP/1.1 101") {
        Ok(Some(end + 4))
    } else {
        Err(String::from_utf8_lossy(status_line).into_owned())
    }
}

/// A small xorshift generator for mask keys: masking is mandatory for clients,
/// but unpredictability only matters for proxies, and there are none here.
pub(crate) fn mask_key(state: &mut u32) -> [u8; 4] {
    let mut x = *state | 1;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    x.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_short_medium_and_long_server_frames() {
        let mut short = vec![0x81, 0x01];
        short.push(b'2');
        let frame = parse_frame(&short, 1 << 20).unwrap().unwrap();
        assert_eq!(
            (frame.fin, frame.opcode, frame.header_len, frame.payload_len),
            (true, Opcode::Text, 2, 1)
        );

        let mut medium = vec![0x81, 126, 0x01, 0x00];
        medium.extend(std::iter::repeat_n(b'x', 256));
        let frame = parse_frame(&medium, 1 << 20).unwrap().unwrap();
        assert_eq!(
            (frame.header_len, frame.payload_len, frame.total_len()),
            (4, 256, 260)
        );

        let mut long = vec![0x01, 127];
        long.extend_from_slice(&70_000u64.to_be_bytes());
        let frame = parse_frame(&long, 1 << 20).unwrap().unwrap();
        assert_eq!(
            (frame.fin, frame.header_len, frame.payload_len),
            (false, 10, 70_000)
        );
        assert!(parse_frame(&long, 1000).is_err());
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        assert_eq!(parse_frame(&[0x81], 100), Ok(None));
        assert_eq!(parse_frame(&[0x81, 126, 0x01], 100_000), Ok(None));
        assert_eq!(parse_frame(&[0x81, 127, 0, 0, 0], 100_000), Ok(None));
        assert_eq!(parse_frame(&[0x81, 0x85, 1, 2], 100), Ok(None));
    }

    #[test]
    fn client_frames_are_masked_and_round_trip() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            encode_client_frame(&mut out, Opcode::Text, &payload, [1, 2, 3, 4]);
            let frame = parse_frame(&out, 1 << 20).unwrap().unwrap();
            assert_eq!(frame.opcode, Opcode::Text);
            assert_eq!(frame.payload_len, len);
            assert_eq!(frame.total_len(), out.len());
            let key = frame.mask.expect("client frames are masked");
            let mut body = out[frame.header_len..].to_vec();
            apply_mask(&mut body, key);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn upgrade_response_head() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x012";
        assert_eq!(parse_upgrade_response(ok), Ok(Some(ok.len() - 3)));
        assert_eq!(parse_upgrade_response(b"HTTP/1.1 101 Switching"), Ok(None));
        assert!(parse_upgrade_response(b"HTTP/1.1 400 Bad Request\r\n\r\n").is_err());
    }

    #[test]
    fn mask_keys_change() {
        let mut state = 7;
        let a = mask_key(&mut state);
        let b = mask_key(&mut state);
        assert_ne!(a, b);
    }
}
