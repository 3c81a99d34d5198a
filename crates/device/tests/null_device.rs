//! Real devices, as far as this machine has them: the ALSA `null` device when present
//! (streams start and stop cleanly; nothing is asserted about timing), and the error a user
//! gets without a sound card.

use std::path::Path;
use std::time::Duration;

use ruang_audio::{FrameDuration, Sink, Source, SourceError};
use ruang_device::{DeviceError, Direction, Microphone, Speaker, list_devices};

const FRAME: FrameDuration = FrameDuration::Ms20;

#[test]
fn listing_devices_works_or_explains() {
    match list_devices() {
        Ok(devices) => {
            println!("{} devices:", devices.len());
            for d in &devices {
                println!(
                    "  {:<30} {:<40} in={} out={}",
                    d.id, d.name, d.is_input, d.is_output
                );
                assert!(!d.id.is_empty());
            }
        }
        Err(e) => println!("no audio system: {e}"),
    }
}

#[test]
fn a_missing_device_by_name_lists_the_alternatives() {
    let err = Microphone::open(Some("no-such-device-xyz"), FRAME).unwrap_err();
    println!("{err}");
    match err {
        DeviceError::NotFound {
            direction,
            ref name,
            ..
        } => {
            assert_eq!(direction, Direction::Input);
            assert_eq!(name, "no-such-device-xyz");
            assert!(err.to_string().contains("--input FILE.wav"));
        }
        DeviceError::NoHost { .. } => println!("SKIPPED: no audio system"),
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn without_a_sound_card_the_error_says_so_and_suggests_files() {
    if Path::new("/dev/snd").exists() {
        println!("SKIPPED: this machine has a sound card (/dev/snd exists)");
        return;
    }
    let mic = Microphone::open(None, FRAME).unwrap_err();
    println!("microphone: {mic}");
    assert!(matches!(
        mic,
        DeviceError::NoDevice {
            direction: Direction::Input,
            ..
        } | DeviceError::NoHost { .. }
    ));
    assert!(mic.to_string().contains("--input FILE.wav"));
    let speaker = Speaker::open(None, FRAME).unwrap_err();
    println!("speaker: {speaker}");
    assert!(matches!(
        speaker,
        DeviceError::NoDevice {
            direction: Direction::Output,
            ..
        } | DeviceError::NoHost { .. }
    ));
    assert!(speaker.to_string().contains("--output FILE.wav"));
}

#[test]
fn the_null_device_starts_and_stops_cleanly() {
    let mut speaker = match Speaker::open(Some("null"), FRAME) {
        Ok(s) => s,
        Err(e) => {
            println!("SKIPPED: ALSA null device not available for output: {e}");
            return;
        }
    };
    println!("speaker: {} {:?}", speaker.name(), speaker.format());
    let tone: Vec<f32> = (0..FRAME.samples())
        .map(|i| 0.2 * (i as f32 * 0.05).sin())
        .collect();
    for _ in 0..10 {
        speaker.push_frame(&tone).unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    speaker.finish().unwrap();
    assert!(speaker.push_frame(&tone).is_err(), "finished");
    println!("speaker stats: {:?}", speaker.stats());
    drop(speaker);

    let mut mic = match Microphone::open(Some("null"), FRAME) {
        Ok(m) => m,
        Err(e) => {
            println!("SKIPPED: ALSA null device not available for input: {e}");
            return;
        }
    };
    println!("microphone: {} {:?}", mic.name(), mic.format());
    mic.set_timeout(Duration::from_millis(300));
    let mut frame = vec![1.0; FRAME.samples()];
    for _ in 0..3 {
        match mic.next_frame(&mut frame) {
            Ok(true) => assert!(frame.iter().all(|x| x.is_finite())),
            Ok(false) => panic!("a microphone does not end"),
            // The null device does not have to keep real time (or deliver at all).
            Err(SourceError::Timeout(_)) => println!("no frame within 300 ms (allowed)"),
            Err(e) => panic!("capture failed: {e}"),
        }
    }
    println!("microphone stats: {:?}", mic.stats());
    drop(mic);
}
