//! The `/ruang/sync/1` request-response protocol: one request, one response, both opaque bytes
//! with a 4-byte big-endian length prefix and a hard bound on each side.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{StreamProtocol, request_response};

use crate::limits::{MAX_SYNC_REQUEST, MAX_SYNC_RESPONSE};

/// Protocol name of the room-log sync.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/ruang/sync/1");

/// Length-prefixed byte codec for [`SYNC_PROTOCOL`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SyncCodec;

/// Reads `u32` BE length + body, refusing bodies over `max` before allocating them.
pub(crate) async fn read_prefixed<T: AsyncRead + Unpin>(
    io: &mut T,
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds the limit of {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Writes `u32` BE length + body and closes the write side.
pub(crate) async fn write_prefixed<T: AsyncWrite + Unpin>(
    io: &mut T,
    data: &[u8],
    max: usize,
) -> io::Result<()> {
    if data.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {} bytes exceeds the limit of {max}", data.len()),
        ));
    }
    // Cannot truncate: data.len() <= max <= 4 MiB.
    let len = data.len() as u32;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(data).await?;
    io.close().await
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_prefixed(io, MAX_SYNC_REQUEST).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_prefixed(io, MAX_SYNC_RESPONSE).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_prefixed(io, &req, MAX_SYNC_REQUEST).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_prefixed(io, &res, MAX_SYNC_RESPONSE).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        futures::executor::block_on(async {
            let mut buf = Vec::new();
            write_prefixed(&mut buf, b"hello", 16).await.unwrap();
            assert_eq!(&buf[..4], &[0, 0, 0, 5]);
            let mut cursor = futures::io::Cursor::new(buf.clone());
            assert_eq!(read_prefixed(&mut cursor, 16).await.unwrap(), b"hello");
            // The reader refuses a length over its bound without reading the body.
            let mut cursor = futures::io::Cursor::new(buf);
            let err = read_prefixed(&mut cursor, 4).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            // The writer refuses too.
            let mut out = Vec::new();
            assert!(write_prefixed(&mut out, &[0; 17], 16).await.is_err());
            // A truncated body is an error, not a short message.
            let mut cursor = futures::io::Cursor::new(vec![0, 0, 0, 9, 1, 2]);
            assert!(read_prefixed(&mut cursor, 16).await.is_err());
        });
    }
}
