//! Capture: a microphone as a [`Source`] of 48 kHz mono frames.
//!
//! ```text
//! cpal callback (real-time)          processing thread                  caller
//! device samples ──► SPSC ring ──► downmix + resample ──► FrameQueue ──► next_frame()
//!   convert to f32, push, unpark      to 48 kHz mono, cut frames      (drop oldest)  (blocks ≤ timeout)
//! ```
//!
//! The callback only converts samples to `f32` and pushes them into a lock-free ring; it never
//! allocates, locks or blocks. If the ring is full (the processing thread stalled), the newest
//! samples are dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample};
use ringbuf::HeapRb;
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ruang_audio::resample::{Resampler, downmix};
use ruang_audio::{FrameDuration, SAMPLE_RATE, Source, SourceError};

use crate::devices::{self, StreamFormat};
use crate::error::{DeviceError, Direction};
use crate::queue::{FrameQueue, Pop};

/// Capacity of the callback → processing ring, in ms of device audio.
const RING_MS: usize = 200;
/// Frames of 48 kHz audio waiting for the caller before the oldest is dropped (80 ms at 20 ms).
const QUEUE_FRAMES: usize = 4;
/// How long the processing thread sleeps when the ring is empty and no callback wakes it.
const IDLE_PARK: Duration = Duration::from_millis(10);
/// Default wait in [`Source::next_frame`] before giving up with [`SourceError::Timeout`].
pub const CAPTURE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the audio system may take to set a stream up.
pub(crate) const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// State shared between the callback, the processing thread and the owner.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    pub(crate) failed: AtomicBool,
    pub(crate) error: std::sync::Mutex<Option<String>>,
    /// Samples the callback could not move (ring full / empty).
    pub(crate) xruns: AtomicU64,
    pub(crate) callbacks: AtomicU64,
}

impl Shared {
    /// Records a stream error (called from cpal's error callback or the processing thread,
    /// never from the data callback).
    pub(crate) fn fail(&self, message: String) {
        let mut slot = self.error.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(message);
        self.failed.store(true, Ordering::Release);
    }

    pub(crate) fn error(&self) -> Option<String> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Counters of a running capture or playback stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Device callbacks so far.
    pub callbacks: u64,
    /// Samples lost in the callback: capture ring full, or playback ring empty (underrun).
    pub xruns: u64,
    /// Frames dropped from the frame queue because it was full.
    pub dropped_frames: u64,
}

/// A microphone delivering 48 kHz mono frames. Dropping it stops the stream and its thread.
pub struct Microphone {
    // Field order matters: the stream stops (and its callback is dropped) first.
    stream: Option<cpal::Stream>,
    shared: Arc<Shared>,
    queue: Arc<FrameQueue>,
    thread: Option<JoinHandle<()>>,
    frame: FrameDuration,
    name: String,
    format: StreamFormat,
    timeout: Duration,
}

impl std::fmt::Debug for Microphone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microphone")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("frame", &self.frame)
            .finish_non_exhaustive()
    }
}

impl Microphone {
    /// Opens the input device `name` (an id from [`crate::list_devices`] or its name), or the
    /// default input for `None`, and starts capturing.
    pub fn open(name: Option<&str>, frame: FrameDuration) -> Result<Microphone, DeviceError> {
        let direction = Direction::Input;
        let host = devices::host()?;
        let device = devices::find(&host, name, direction)?;
        let label = name.unwrap_or("default").to_string();
        let config = devices::choose_config(&device, direction, &label)
            .map_err(|e| devices::default_missing(e, name, direction))?;
        let format = StreamFormat::from(&config);
        let channels = format.channels as usize;

        let ring_len = (format.sample_rate as usize * RING_MS / 1000).max(1024) * channels;
        let (producer, consumer) = HeapRb::<f32>::new(ring_len).split();
        let shared = Arc::new(Shared::default());
        let queue = Arc::new(FrameQueue::new(QUEUE_FRAMES));
        let resampler = Resampler::new(format.sample_rate, SAMPLE_RATE)?;

        let worker = Worker {
            consumer,
            resampler,
            channels,
            frame,
            queue: queue.clone(),
            shared: shared.clone(),
        };
        let thread = thread::Builder::new()
            .name(format!("ruang-mic {label}"))
            .spawn(move || worker.run())
            .map_err(DeviceError::Thread)?;
        let waker = thread.thread().clone();

        let stream_config = config.config();
        let built = match format.sample_format {
            SampleFormat::F32 => build::<f32>(&device, stream_config, producer, waker, &shared),
            SampleFormat::I16 => build::<i16>(&device, stream_config, producer, waker, &shared),
            SampleFormat::I32 => build::<i32>(&device, stream_config, producer, waker, &shared),
            SampleFormat::I24 => {
                build::<cpal::I24>(&device, stream_config, producer, waker, &shared)
            }
            SampleFormat::U16 => build::<u16>(&device, stream_config, producer, waker, &shared),
            SampleFormat::U8 => build::<u8>(&device, stream_config, producer, waker, &shared),
            other => {
                return Err(stop_on_error(
                    &shared,
                    &queue,
                    thread,
                    DeviceError::Format {
                        direction,
                        name: label,
                        reason: format!("unsupported sample format {other}"),
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
        Ok(Microphone {
            stream: Some(stream),
            shared,
            queue,
            thread: Some(thread),
            frame,
            name: label,
            format,
            timeout: CAPTURE_TIMEOUT,
        })
    }

    /// The device opened.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's stream format (before conversion to 48 kHz mono).
    pub fn format(&self) -> StreamFormat {
        self.format
    }

    /// How long [`Source::next_frame`] waits for a frame (default [`CAPTURE_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Counters of the stream.
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
}

impl Source for Microphone {
    fn frame_duration(&self) -> FrameDuration {
        self.frame
    }

    fn next_frame(&mut self, out: &mut [f32]) -> Result<bool, SourceError> {
        if out.len() != self.frame.samples() {
            return Err(SourceError::FrameSize {
                expected: self.frame.samples(),
                got: out.len(),
            });
        }
        match self.queue.pop_into(out, self.timeout) {
            Pop::Frame(_) => Ok(true),
            Pop::Timeout => match self.shared.error() {
                Some(e) => Err(SourceError::Device(e)),
                None => Err(SourceError::Timeout(self.timeout)),
            },
            Pop::Closed => Err(SourceError::Device(
                self.shared
                    .error()
                    .unwrap_or_else(|| "capture stopped".to_string()),
            )),
        }
    }
}

impl Drop for Microphone {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            let _ = stream.pause();
            drop(stream);
        }
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Stops a worker thread after a failed open and returns the error.
pub(crate) fn stop_on_error(
    shared: &Shared,
    queue: &FrameQueue,
    thread: JoinHandle<()>,
    err: DeviceError,
) -> DeviceError {
    shared.stop.store(true, Ordering::Release);
    queue.close();
    thread.thread().unpark();
    let _ = thread.join();
    err
}

/// Builds the capture stream. The data callback converts and pushes whole sample frames, then
/// wakes the processing thread: no allocation, no lock.
fn build<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut producer: ringbuf::HeapProd<f32>,
    waker: thread::Thread,
    shared: &Arc<Shared>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let channels = config.channels.max(1) as usize;
    let in_callback = shared.clone();
    let on_error = shared.clone();
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _info: &cpal::InputCallbackInfo| {
            in_callback.callbacks.fetch_add(1, Ordering::Relaxed);
            // Only whole sample frames, so the ring never splits a frame across channels.
            let room = producer.vacant_len() / channels * channels;
            let n = data.len().min(room);
            producer.push_iter(data[..n].iter().map(|&s| f32::from_sample(s)));
            if n < data.len() {
                in_callback
                    .xruns
                    .fetch_add((data.len() - n) as u64, Ordering::Relaxed);
            }
            waker.unpark();
        },
        move |err| on_error.fail(err.to_string()),
        Some(OPEN_TIMEOUT),
    )
}

/// The processing thread: ring → mono → 48 kHz → frames → queue.
struct Worker {
    consumer: ringbuf::HeapCons<f32>,
    resampler: Resampler,
    channels: usize,
    frame: FrameDuration,
    queue: Arc<FrameQueue>,
    shared: Arc<Shared>,
}

impl Worker {
    fn run(mut self) {
        // About 10 ms of device audio per read, in whole sample frames.
        let chunk = (self.resampler.from_rate() as usize / 100).max(64) * self.channels;
        let mut interleaved = vec![0.0f32; chunk];
        let mut mono = Vec::with_capacity(chunk);
        let mut frame = vec![0.0f32; self.frame.samples()];
        while !self.shared.stop.load(Ordering::Acquire) {
            let n = self.consumer.pop_slice(&mut interleaved);
            if n == 0 {
                thread::park_timeout(IDLE_PARK);
                continue;
            }
            mono.clear();
            downmix(&interleaved[..n], self.channels, &mut mono);
            if let Err(e) = self.resampler.push(&mono) {
                self.shared.fail(e.to_string());
                break;
            }
            while self.resampler.available() >= frame.len() {
                self.resampler.pop(&mut frame);
                self.queue.push(&frame);
            }
        }
        self.queue.close();
    }
}
