//! Ogg Opus recordings: parsed back with the `ogg` crate (headers, page granules, packet
//! count, end of stream) and decoded with `opusdec` from opus-tools when it is installed.

mod support;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::process::Command;

use ogg::reading::PacketReader;
use ruang_audio::FrameDuration;
use ruang_audio::codec::{Encoder, EncoderConfig, OPUS_LOOKAHEAD};
use ruang_audio::sink::{OggOpusConfig, OggOpusWriter, Sink};
use support::{best_lag, correlation_at, voice};

/// What a parsed file holds.
#[derive(Debug)]
struct Parsed {
    pre_skip: u16,
    vendor: String,
    comments: Vec<String>,
    audio_packets: usize,
    /// Granule of every page that ends an audio packet, with the samples of packets completed
    /// up to there.
    pages: Vec<(u64, u64)>,
    final_granule: u64,
    eos: bool,
    max_packets_per_page: usize,
}

fn parse(path: &Path) -> Parsed {
    let mut reader = PacketReader::new(BufReader::new(File::open(path).unwrap()));
    let head = reader.read_packet_expected().unwrap();
    assert!(
        head.first_in_stream() && head.last_in_page(),
        "OpusHead alone on the first page"
    );
    assert_eq!(head.absgp_page(), 0);
    let h = &head.data;
    assert_eq!(h.len(), 19);
    assert_eq!(&h[..8], b"OpusHead");
    assert_eq!(h[8], 1, "version");
    assert_eq!(h[9], 1, "channels");
    let pre_skip = u16::from_le_bytes([h[10], h[11]]);
    assert_eq!(u32::from_le_bytes([h[12], h[13], h[14], h[15]]), 48_000);
    assert_eq!(i16::from_le_bytes([h[16], h[17]]), 0, "gain");
    assert_eq!(h[18], 0, "mapping family");

    let tags = reader.read_packet_expected().unwrap();
    assert!(
        tags.first_in_page() && tags.last_in_page(),
        "OpusTags on its own page"
    );
    assert_eq!(tags.absgp_page(), 0);
    let t = &tags.data;
    assert_eq!(&t[..8], b"OpusTags");
    let u32_at = |i: usize| u32::from_le_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]) as usize;
    let vendor_len = u32_at(8);
    let vendor = String::from_utf8(t[12..12 + vendor_len].to_vec()).unwrap();
    let mut at = 12 + vendor_len;
    let count = u32_at(at);
    at += 4;
    let mut comments = Vec::new();
    for _ in 0..count {
        let len = u32_at(at);
        comments.push(String::from_utf8(t[at + 4..at + 4 + len].to_vec()).unwrap());
        at += 4 + len;
    }

    let mut audio_packets = 0;
    let mut samples = 0u64;
    let mut pages = Vec::new();
    let mut in_page = 0;
    let mut max_packets_per_page = 0;
    let mut eos = false;
    let mut final_granule = 0;
    while let Some(p) = reader.read_packet().unwrap() {
        audio_packets += 1;
        in_page += 1;
        samples += opus::packet::get_nb_samples(&p.data, 48_000).unwrap() as u64;
        if p.last_in_page() {
            pages.push((p.absgp_page(), samples));
            max_packets_per_page = max_packets_per_page.max(in_page);
            in_page = 0;
        }
        if p.last_in_stream() {
            eos = true;
            final_granule = p.absgp_page();
        }
    }
    Parsed {
        pre_skip,
        vendor,
        comments,
        audio_packets,
        pages,
        final_granule,
        eos,
        max_packets_per_page,
    }
}

/// Checks the granules of every page: they never go back, and every page but the last one
/// ends exactly at the samples of the packets completed on it.
fn check_granules(p: &Parsed) {
    assert!(p.eos, "end-of-stream page");
    assert!(
        p.pages.windows(2).all(|w| w[0].0 <= w[1].0),
        "granules monotonic: {:?}",
        p.pages
    );
    for &(granule, samples) in &p.pages[..p.pages.len() - 1] {
        assert_eq!(granule, samples);
    }
    assert_eq!(p.pages.last().unwrap().0, p.final_granule);
    assert!(p.final_granule <= p.pages.last().unwrap().1);
}

/// Decodes `path` with opusdec into 48 kHz PCM, or `None` (with a message) without opusdec.
fn opusdec(path: &Path) -> Option<Vec<f32>> {
    let out = path.with_extension("decoded.wav");
    let status = match Command::new("opusdec")
        .args(["--quiet", "--rate", "48000", "--no-dither"])
        .arg(path)
        .arg(&out)
        .status()
    {
        Ok(status) => status,
        Err(e) => {
            println!("SKIPPED: opusdec not available ({e}); install opus-tools to check playback");
            return None;
        }
    };
    assert!(status.success(), "opusdec failed on {}", path.display());
    let mut reader = hound::WavReader::open(&out).unwrap();
    assert_eq!(reader.spec().channels, 1);
    assert_eq!(reader.spec().sample_rate, 48_000);
    Some(
        reader
            .samples::<i16>()
            .map(|s| s.unwrap() as f32 / 32_768.0)
            .collect(),
    )
}

#[test]
fn packets_from_the_wire_are_muxed_without_reencoding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("speaker.opus");
    let input = voice(21, 3.0, FrameDuration::Ms20);
    let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
    let config = OggOpusConfig {
        comments: vec!["TITLE=test room".into()],
        ..Default::default()
    };
    let mut writer = OggOpusWriter::create(&path, config).unwrap();
    let mut sent = Vec::new();
    for (i, frame) in input.chunks(960).enumerate() {
        let packet = enc.encode(frame).unwrap();
        if i == 80 {
            // A frame that never arrived: the file keeps the timeline with a concealment packet.
            writer.push_missing(960).unwrap();
        } else {
            writer.push_packet(&packet, 960).unwrap();
        }
        sent.push(packet);
    }
    assert!(
        writer.push_packet(&[0x03, 0x00], 960).is_err(),
        "a corrupt packet is refused"
    );
    writer.finish().unwrap();
    drop(writer);

    let p = parse(&path);
    println!("{p:?}");
    assert_eq!(p.pre_skip as usize, OPUS_LOOKAHEAD);
    assert!(p.vendor.starts_with("ruang-audio"));
    assert_eq!(p.comments, vec!["TITLE=test room".to_string()]);
    assert_eq!(p.audio_packets, 150);
    assert_eq!(p.max_packets_per_page, 50);
    check_granules(&p);
    // The sender's encoder was never flushed: the stream ends with its last packet.
    assert_eq!(p.final_granule, 150 * 960);

    // Byte for byte the packets that were pushed.
    let mut reader = PacketReader::new(BufReader::new(File::open(&path).unwrap()));
    reader.read_packet_expected().unwrap();
    reader.read_packet_expected().unwrap();
    for (i, packet) in sent.iter().enumerate() {
        let got = reader.read_packet_expected().unwrap();
        if i == 80 {
            assert_eq!(got.data.len(), 1);
        } else {
            assert_eq!(&got.data, packet, "packet {i}");
        }
    }

    if let Some(decoded) = opusdec(&path) {
        // Pre-skip trimmed at the start, nothing past the final granule at the end.
        assert_eq!(decoded.len(), 150 * 960 - OPUS_LOOKAHEAD);
        let (lag, c) = best_lag(&input[..96_000], &decoded, 20);
        println!(
            "opusdec: {} samples, correlation {c:.3} at lag {lag}",
            decoded.len()
        );
        assert!(c > 0.85, "correlation {c}");
    }
}

#[test]
fn pcm_is_encoded_and_the_end_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mix.opus");
    let input = voice(22, 2.0, FrameDuration::Ms20);
    let n = input.len() - 837; // not a whole number of frames
    let mut writer = OggOpusWriter::create(&path, OggOpusConfig::default()).unwrap();
    for chunk in input[..n].chunks(700) {
        writer.push_frame(chunk).unwrap();
    }
    Sink::finish(&mut writer).unwrap();
    Sink::finish(&mut writer).unwrap();
    assert!(writer.push_frame(&[0.0; 960]).is_err());
    drop(writer);

    let p = parse(&path);
    check_granules(&p);
    assert_eq!(p.pre_skip as usize, OPUS_LOOKAHEAD);
    assert_eq!(p.final_granule, n as u64 + OPUS_LOOKAHEAD as u64);
    assert_eq!(p.audio_packets, (n + OPUS_LOOKAHEAD).div_ceil(960));

    if let Some(decoded) = opusdec(&path) {
        assert_eq!(
            decoded.len(),
            n,
            "opusdec gives back exactly the samples pushed"
        );
        let c = correlation_at(&input[..n], &decoded, 0);
        let (lag, best) = best_lag(&input[..48_000], &decoded, 10);
        println!("opusdec: correlation {c:.3} at lag 0, best {best:.3} at lag {lag}");
        assert!(lag <= 6, "aligned to within the codec's phase: lag {lag}");
        assert!(c > 0.85, "correlation {c}");
    }
}

#[test]
fn an_empty_recording_is_still_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.opus");
    OggOpusWriter::create(&path, OggOpusConfig::default())
        .unwrap()
        .finish()
        .unwrap();
    let p = parse(&path);
    check_granules(&p);
    assert_eq!(p.audio_packets, 1);
    if let Some(decoded) = opusdec(&path) {
        assert!(decoded.is_empty(), "{} samples", decoded.len());
    }
}
