//! Playback: a loudspeaker as a [`Sink`] of 48 kHz mono frames.
//!
//! ```text
//! caller              processing thread                         cpal callback (real-time)
//! push_frame() ──► FrameQueue ──► resample + upmix ──► SPSC ring ──► convert, copy to device
//!   (never blocks;    to device rate/channels,      (bounded:        (silence on underrun;
//!    drops oldest)    cap the buffered audio         drop oldest)     no allocation, no lock)
//! ```
//!
//! A producer cannot remove from an SPSC ring, so "drop the oldest" is a request: the
//! processing thread adds the excess to an atomic counter and the callback skips that many
//! samples before playing. The audio buffered between push and loudspeaker thus never
//! exceeds [`MAX_BUFFER_MS`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ruang_audio::resample::{Resampler, upmix};
use ruang_audio::{FrameDuration, SAMPLE_RATE, Sink, SinkError};

use crate::devices::{self, StreamFormat};
use crate::error::{DeviceError, Direction};
use crate::microphone::{OPEN_TIMEOUT, Shared, StreamStats, stop_on_error};
use crate::queue::{FrameQueue, Pop};

/// Most audio buffered in the ring before the oldest is dropped, in ms.
pub const MAX_BUFFER_MS: usize = 80;
/// Ring capacity in ms (headroom above [`MAX_BUFFER_MS`] so a push always fits).
const RING_MS: usize = 160;
/// Frames waiting for the processing thread before the oldest is dropped.
const QUEUE_FRAMES: usize = 4;
/// How often the processing thread checks for shutdown while idle.
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// Longest [`Sink::finish`] waits for buffered audio to play out.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A loudspeaker taking 48 kHz mono frames. Dropping it stops the stream and its thread.
pub struct Speaker {
    // Field order matters: the stream stops (and its callback is dropped) first.
    stream: Option<cpal::Stream>,
    shared: Arc<Shared>,
    queue: Arc<FrameQueue>,
    buffered: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
    frame: FrameDuration,
    name: String,
    format: StreamFormat,
    finished: bool,
}

impl std::fmt::Debug for Speaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speaker")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("frame", &self.frame)
            .finish_non_exhaustive()
    }
}

impl Speaker {
    /// Opens the output device `name` (an id from [`crate::list_devices`] or its name), or the
    /// default output for `None`, and starts playing (silence until frames come).
    pub fn open(name: Option<&str>, frame: FrameDuration) -> Result<Speaker, DeviceError> {
        let direction = Direction::Output;
        let host = devices::host()?;
        let device = devices::find(&host, name, direction)?;
        let label = name.unwrap_or("default").to_string();
        let config = devices::choose_config(&device, direction, &label)
            .map_err(|e| devices::default_missing(e, name, direction))?;
        let format = StreamFormat::from(&config);
        let channels = format.channels as usize;
        // Device samples per ms, in whole sample frames.
        let per_ms = (format.sample_rate as usize).div_ceil(1000) * channels;

        let ring_len = (per_ms * RING_MS).max(2048 * channels);
        let (producer, consumer) = HeapRb::<f32>::new(ring_len).split();
        let skip = Arc::new(AtomicUsize::new(0));
        let buffered = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared::default());
        let queue = Arc::new(FrameQueue::new(QUEUE_FRAMES));
        let resampler = Resampler::new(SAMPLE_RATE, format.sample_rate)?;

        let worker = Worker {
            producer,
            resampler,
            channels,
            frame,
            max_buffer: (per_ms * MAX_BUFFER_MS).max(channels),
            skip: skip.clone(),
            buffered: buffered.clone(),
            queue: queue.clone(),
            shared: shared.clone(),
        };
        let thread = thread::Builder::new()
            .name(format!("ruang-speaker {label}"))
            .spawn(move || worker.run())
            .map_err(DeviceError::Thread)?;

        let cfg = config.config();
        let built = match format.sample_format {
            SampleFormat::F32 => build::<f32>(&device, cfg, consumer, skip, &shared),
            SampleFormat::I16 => build::<i16>(&device, cfg, consumer, skip, &shared),
            SampleFormat::I32 => build::<i32>(&device, cfg, consumer, skip, &shared),
            SampleFormat::I24 => build::<cpal::I24>(&device, cfg, consumer, skip, &shared),
            SampleFormat::U16 => build::<u16>(&device, cfg, consumer, skip, &shared),
            SampleFormat::U8 => build::<u8>(&device, cfg, consumer, skip, &shared),
            other => {
                return Err(stop_on_error(
                    &shared,
                    &queue,
                    thread,
                    DeviceError::Format {
                        direction,
                        name: label,
                        reason: format!("unsupported sample format {other:?}"),
                    },
                ));
            }
        };
        let open_err = |e: cpal::Error| DeviceError::Open {
            direction,
            name: label.clone(),
            reason: e.to_string(),
        };
        let stream = match built
            .map_err(open_err)
            .and_then(|s| s.play().map(|_| s).map_err(open_err))
        {
            Ok(stream) => stream,
            Err(e) => {
                let e = devices::default_missing(e, name, direction);
                return Err(stop_on_error(&shared, &queue, thread, e));
            }
        };
        Ok(Speaker {
            stream: Some(stream),
            shared,
            queue,
            buffered,
            thread: Some(thread),
            frame,
            name: label,
            format,
            finished: false,
        })
    }

    /// The device opened.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's stream format (after conversion from 48 kHz mono).
    pub fn format(&self) -> StreamFormat {
        self.format
    }

    /// Frame duration this speaker was opened for.
    pub fn frame_duration(&self) -> FrameDuration {
        self.frame
    }

    /// Counters of the stream (xruns are underruns: samples played as silence).
    pub fn stats(&self) -> StreamStats {
        StreamStats {
            callbacks: self.shared.callbacks.load(Ordering::Relaxed),
            xruns: self.shared.xruns.load(Ordering::Relaxed),
            dropped_frames: self.queue.dropped(),
        }
    }

    /// The stream error reported by the audio system, if any.
    pub fn error(&self) -> Option<String> {
        self.shared.error()
    }

    fn stop(&mut self) {
        if let Some(stream) = self.stream.take() {
            let _ = stream.pause();
            drop(stream);
        }
        self.shared.stop.store(true, Ordering::Release);
        self.queue.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Sink for Speaker {
    fn push_frame(&mut self, pcm: &[f32]) -> Result<(), SinkError> {
        if self.finished {
            return Err(SinkError::Finished);
        }
        if let Some(e) = self.shared.error() {
            return Err(SinkError::Device(e));
        }
        self.queue.push(pcm);
        Ok(())
    }

    /// Lets queued audio play out (for at most a second), then stops the stream.
    fn finish(&mut self) -> Result<(), SinkError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while (self.queue.len() > 0 || self.buffered.load(Ordering::Acquire) > 0)
            && Instant::now() < deadline
            && self.shared.error().is_none()
        {
            thread::sleep(Duration::from_millis(5));
        }
        self.stop();
        Ok(())
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds the playback stream. The data callback honours skip requests, then copies from the
/// ring (silence when it runs dry): no allocation, no lock.
fn build<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut consumer: ringbuf::HeapCons<f32>,
    skip: Arc<AtomicUsize>,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
{
    let in_callback = shared.clone();
    let on_error = shared.clone();
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], _info: &cpal::OutputCallbackInfo| {
            in_callback.callbacks.fetch_add(1, Ordering::Relaxed);
            let drop_oldest = skip.swap(0, Ordering::AcqRel);
            if drop_oldest > 0 {
                let n = drop_oldest.min(consumer.occupied_len());
                consumer.skip(n);
            }
            let mut missing = 0u64;
            for out in data.iter_mut() {
                *out = match consumer.try_pop() {
                    Some(v) => T::from_sample(v),
                    None => {
                        missing += 1;
                        T::EQUILIBRIUM
                    }
                };
            }
            if missing > 0 {
                in_callback.xruns.fetch_add(missing, Ordering::Relaxed);
            }
        },
        move |err| on_error.fail(err.to_string()),
        Some(OPEN_TIMEOUT),
    )
}

/// The processing thread: queue → device rate → device channels → ring.
struct Worker {
    producer: ringbuf::HeapProd<f32>,
    resampler: Resampler,
    channels: usize,
    frame: FrameDuration,
    max_buffer: usize,
    skip: Arc<AtomicUsize>,
    buffered: Arc<AtomicUsize>,
    queue: Arc<FrameQueue>,
    shared: Arc<Shared>,
}

impl Worker {
    fn run(mut self) {
        let mut frame = vec![0.0f32; self.frame.samples()];
        let mut converted = vec![0.0f32; self.frame.samples() * 8];
        let mut interleaved = Vec::with_capacity(converted.len() * self.channels);
        loop {
            self.buffered
                .store(self.producer.occupied_len(), Ordering::Release);
            let len = match self.queue.pop_into(&mut frame, IDLE_WAIT) {
                Pop::Frame(len) => len,
                Pop::Timeout if self.shared.stop.load(Ordering::Acquire) => break,
                Pop::Timeout => continue,
                Pop::Closed => break,
            };
            // A short frame is played short: the playout slipped earlier in a silence.
            if let Err(e) = self.resampler.push(&frame[..len]) {
                self.shared.fail(e.to_string());
                break;
            }
            while self.resampler.available() > 0 {
                let n = self.resampler.pop(&mut converted);
                interleaved.clear();
                upmix(&converted[..n], self.channels, &mut interleaved);
                self.write(&interleaved);
            }
        }
        self.buffered.store(0, Ordering::Release);
    }

    /// Writes device samples, first asking the callback to drop the oldest ones if the ring
    /// would hold more than the bound.
    fn write(&mut self, samples: &[f32]) {
        let pending_skip = self.skip.load(Ordering::Acquire);
        let occupied = self.producer.occupied_len().saturating_sub(pending_skip);
        let excess = (occupied + samples.len()).saturating_sub(self.max_buffer);
        if excess > 0 {
            // Whole sample frames only, so channels stay aligned.
            let excess = excess.div_ceil(self.channels) * self.channels;
            self.skip.fetch_add(excess, Ordering::AcqRel);
        }
        let fits = (self.producer.vacant_len() / self.channels * self.channels).min(samples.len());
        let written = self.producer.push_slice(&samples[..fits]);
        if written < samples.len() {
            // Only possible if the callback has not run for longer than the headroom: the
            // newest samples are lost (counted as xruns).
            self.shared
                .xruns
                .fetch_add((samples.len() - written) as u64, Ordering::Relaxed);
        }
    }
}
